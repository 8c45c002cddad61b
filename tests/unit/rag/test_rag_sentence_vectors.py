"""Passage sentences embedded once at ingest and read by the grounding check."""

import numpy as np
import pytest

from chatstack.rag.chunking import ChunkingParams
from chatstack.rag.embedder import CachedEmbedder
from chatstack.rag.grounding import check_grounding, split_sentences
from chatstack.rag.ingest import Ingestor, discover
from chatstack.rag.retriever import Passage
from chatstack.rag.sentence_vectors import SentenceVectors
from tests.unit.rag.test_rag_embedder import CountingEmbedder

SETS = "# Sets\n\nA set holds unique items. Adding an item twice keeps one copy.\n"
TUPLES = "# Tuples\n\nA tuple is an immutable sequence. Its items cannot be reassigned. Tuples can be nested.\n"


def test_vectors_round_trip_and_bad_files_are_refused(tmp_path):
    path = tmp_path / "s.db"
    store = SentenceVectors(path, dim=3)
    store.add(["a.", "b."], np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32))
    assert store.missing(["b.", "c.", "a.", "c."]) == ["c."] and len(store) == 2
    np.testing.assert_array_equal(store.lookup(["b."])["b."], [0, 1, 0])
    with pytest.raises(ValueError, match="2 texts but 1 vectors"):
        store.add(["x.", "y."], np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="vectors have 4 dimensions"):
        store.add(["x."], np.zeros((1, 4), dtype=np.float32))
    store.close()
    reader = SentenceVectors(path, dim=3, read_only=True)
    assert reader.lookup(["a.", "zzz"]).keys() == {"a."}
    with pytest.raises(ValueError, match="holds 3-dimensional vectors, the embedder makes 384"):
        SentenceVectors(path, dim=384, read_only=True)
    with pytest.raises(FileNotFoundError, match="run chatstack ingest"):
        SentenceVectors(tmp_path / "none.db", dim=3, read_only=True)


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "sets.md").write_text(SETS)
    (root / "tuples.md").write_text(TUPLES)
    return root


def test_ingest_embeds_each_sentence_once_and_fills_a_file_made_after_the_index(tmp_path, embedder, offsets,
                                                                                 corpus, store):
    params = ChunkingParams(max_tokens=64, overlap_tokens=8)
    Ingestor(store, embedder, offsets, params).ingest([discover(corpus)])  # an index from before the file existed
    sentences = SentenceVectors(tmp_path / "sentences.db", embedder.dim)
    ingestor = Ingestor(store, embedder, offsets, params, sentences=sentences)
    report = ingestor.ingest([discover(corpus)])
    expected = {s for chunk in store.tenant_chunks("default", 100)[0] for s in split_sentences(chunk.text)}
    assert report.unchanged == 2 and report.sentences_embedded == len(expected) == 5
    assert sentences.missing(sorted(expected)) == []
    np.testing.assert_allclose(sentences.lookup(["Tuples can be nested."])["Tuples can be nested."],
                               embedder.embed(["Tuples can be nested."])[0], atol=1e-6)
    assert ingestor.ingest([discover(corpus)]).sentences_embedded == 0  # nothing new


def test_grounding_with_stored_sentences_embeds_only_the_answer_and_scores_alike(tmp_path, embedder):
    passages = [Passage(TUPLES.split("\n\n", 1)[1], "tuples.md", 0.8, title="Tuples")]
    store = SentenceVectors(tmp_path / "sentences.db", embedder.dim)
    units = [s for p in passages for s in split_sentences(p.text)] + [p.text for p in passages]
    store.add(units, embedder.embed(units))
    counting = CountingEmbedder(embedder)
    answer = "A tuple cannot be changed. Its items stay as they are."
    report = check_grounding(answer, passages, CachedEmbedder(counting, store=store))
    assert counting.calls == [split_sentences(answer)]
    plain = check_grounding(answer, passages, embedder)
    assert report.grounded == plain.grounded
    assert [s.score for s in report.sentences] == pytest.approx([s.score for s in plain.sentences], abs=1e-5)


def test_grounding_benchmark_times_both_paths_on_the_ingested_index(tmp_path, embedder, offsets, corpus, store):
    from chatstack.rag.bench import run_grounding_benchmark

    sentences = SentenceVectors(tmp_path / "sentences.db", embedder.dim)
    Ingestor(store, embedder, offsets, ChunkingParams(max_tokens=64, overlap_tokens=8), sentences=sentences).ingest(
        [discover(corpus)])
    cost = run_grounding_benchmark(store, "default", embedder, sentences, answers=3)
    assert len(cost.per_answer_ms) == len(cost.stored_ms) == 3 and cost.max_score_difference < 1e-5
    assert "read from the sentence-vector file" in cost.table()
    with pytest.raises(ValueError, match="holds no chunks"):
        run_grounding_benchmark(store, "nobody", embedder, sentences)


def test_a_locked_file_is_answered_with_nothing_and_the_caller_embeds(tmp_path, embedder):
    import sqlite3

    writer = SentenceVectors(tmp_path / "s.db", dim=embedder.dim)
    writer.add(["Sets are unordered."], embedder.embed(["Sets are unordered."]))
    reader = SentenceVectors(tmp_path / "s.db", dim=embedder.dim, read_only=True)
    lock = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # an ingest in the middle of writing
    try:
        assert reader.lookup(["Sets are unordered."]) == {}
        cached = CachedEmbedder(embedder, store=reader)
        np.testing.assert_allclose(cached.embed(["Sets are unordered."]), embedder.embed(["Sets are unordered."]),
                                   atol=1e-6)
    finally:
        lock.execute("ROLLBACK")
    assert reader.lookup(["Sets are unordered."]).keys() == {"Sets are unordered."}
