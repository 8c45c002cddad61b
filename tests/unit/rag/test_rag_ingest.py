"""Ingest against a real Milvus Lite file: idempotence, updates, deletions, skips, tenants."""

import pytest

from chatstack.rag.chunking import ChunkingParams
from chatstack.rag.ingest import Ingestor, discover
from chatstack.rag.service import MilvusRetriever

SETS = "# Sets\n\nA set holds unique items. Adding an item twice keeps one copy.\n"
TUPLES = "# Tuples\n\nA tuple is an immutable sequence. Its items cannot be reassigned.\n"
CHANGED_TUPLES = "# Tuples\n\nTuples are immutable; unpacking assigns each item to a name.\n"


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "sets.md").write_text(SETS)
    (root / "sub" / "tuples.md").write_text(TUPLES)
    (root / "page.html").write_text("<h1>Dicts</h1><p>A dict maps keys to values.</p>")
    return root


def make_ingestor(store, embedder, offsets, tenant="default"):
    return Ingestor(store, embedder, offsets, ChunkingParams(max_tokens=64, overlap_tokens=8), tenant=tenant)


def stored(store, tenant="default"):
    return sorted((r.source, r.chunk_id) for r in store.refs(tenant))


def test_ingest_then_search_returns_the_answering_chunk(store, embedder, offsets, corpus):
    report = make_ingestor(store, embedder, offsets).ingest([discover(corpus)])
    assert (report.files, report.added, report.skipped) == (3, 3, [])
    hits = MilvusRetriever(store, embedder, "default", score_threshold=0.2).search("Can a tuple be changed?", 2)
    assert hits[0].source == "corpus/sub/tuples.md" and hits[0].section == "Tuples" and hits[0].chunk_id
    assert "immutable" in hits[0].text and hits[0].score > 0.4


def test_reingest_is_idempotent_and_follows_changes_and_deletions(store, embedder, offsets, corpus):
    ingestor = make_ingestor(store, embedder, offsets)
    ingestor.ingest([discover(corpus)])
    before = stored(store)
    again = ingestor.ingest([discover(corpus)])
    assert (again.added, again.removed, again.unchanged) == (0, 0, 3)
    assert stored(store) == before and store.row_count() == 3

    (corpus / "sub" / "tuples.md").write_text(CHANGED_TUPLES)
    (corpus / "page.html").unlink()
    changed = ingestor.ingest([discover(corpus)])
    assert (changed.added, changed.removed, changed.unchanged) == (1, 2, 1)
    assert changed.removed_sources == ["corpus/page.html"]
    after = stored(store)
    assert [s for s, _ in after] == ["corpus/sets.md", "corpus/sub/tuples.md"]
    assert after[0] == before[1]  # sets.md kept its chunk and id
    hit = MilvusRetriever(store, embedder, "default", 0.0).search("tuple unpacking", 1)[0]
    assert "unpacking" in hit.text


def test_an_excluded_file_is_left_out_and_its_chunks_ingested_before_removed(store, embedder, offsets, corpus):
    ingestor = make_ingestor(store, embedder, offsets)
    ingestor.ingest([discover(corpus)])
    report = ingestor.ingest([discover(corpus, exclude=(corpus / "sub" / "tuples.md",))])
    assert (report.files, report.removed, report.removed_sources) == (2, 1, ["corpus/sub/tuples.md"])
    assert [s for s, _ in stored(store)] == ["corpus/page.html", "corpus/sets.md"]
    assert discover(corpus / "sets.md", exclude=(corpus / "sets.md",)).files == ()


def test_the_demo_corpus_leaves_out_the_page_that_quotes_the_evaluation():
    import json

    from chatstack import project
    from chatstack.rag.demo_corpus import DEMO_CORPUS_EXCLUDED

    docs = discover(project.ROOT / "docs", DEMO_CORPUS_EXCLUDED)
    questions = [json.loads(line)["question"] for name in ("demo_qa.jsonl", "uncovered_questions.jsonl")
                 for line in (project.ROOT / "data" / "rag_eval" / name).read_text().splitlines() if line.strip()]
    assert "docs/rag.md" in {f.source for f in docs.files}
    quoting = [f.source for f in docs.files if any(q in f.path.read_text(encoding="utf-8") for q in questions)]
    assert quoting == []  # no ingested page holds an evaluation question word for word
    assert any(q in (project.ROOT / "docs" / "training.md").read_text(encoding="utf-8") for q in questions)


def test_bad_files_are_skipped_and_the_rest_ingested(store, embedder, offsets, corpus):
    (corpus / "empty.txt").write_text("")
    (corpus / "blob.txt").write_bytes(b"\x00\x01binary")
    (corpus / "photo.jpg").write_bytes(b"\xff\xd8")
    (corpus / ".hidden.md").write_text("# Hidden\n\nnever ingested")
    report = make_ingestor(store, embedder, offsets).ingest([discover(corpus)])
    assert report.files == 3 and report.added == 3
    reasons = {path.rsplit("/", 1)[1]: reason for path, reason in report.skipped}
    assert set(reasons) == {"empty.txt", "blob.txt", "photo.jpg"}
    assert "empty" in reasons["empty.txt"] and "binary" in reasons["blob.txt"] and "unsupported" in reasons["photo.jpg"]


def test_tenants_see_only_their_own_chunks(store, embedder, offsets, corpus, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "secret.md").write_text("# Tuples\n\nTenant B's private note about tuples.\n")
    make_ingestor(store, embedder, offsets, tenant="a").ingest([discover(corpus)])
    make_ingestor(store, embedder, offsets, tenant="b").ingest([discover(other)])
    for tenant, sources in (("a", {"corpus/sets.md", "corpus/sub/tuples.md", "corpus/page.html"}),
                            ("b", {"other/secret.md"})):
        hits = MilvusRetriever(store, embedder, tenant, score_threshold=-1.0).search("tuples", 10)
        assert {h.source for h in hits} == sources
    # re-ingesting tenant b's folder with the file gone removes only tenant b's chunk
    (other / "secret.md").unlink()
    make_ingestor(store, embedder, offsets, tenant="b").ingest([discover(other)])
    assert stored(store, "b") == [] and len(stored(store, "a")) == 3


def test_score_threshold_drops_weak_passages(store, embedder, offsets, corpus):
    make_ingestor(store, embedder, offsets).ingest([discover(corpus)])
    assert MilvusRetriever(store, embedder, "default", 0.9).search("quantum chromodynamics", 3) == []
