"""The grounding score separates supported from invented sentences on a fixed example set."""

import pytest

from chatstack.rag.grounding import GroundingParams, check_grounding, content_words, split_sentences
from chatstack.rag.retriever import Passage

PASSAGES = [
    Passage("A list comprehension consists of brackets containing an expression followed by a for clause, "
            "then zero or more for or if clauses. The result is a new list.", "python_topics/lists.txt", 0.8),
    Passage("Dictionaries map hashable keys to arbitrary values. Keys must be unique within one dictionary; "
            "assigning to an existing key replaces its value.", "python_topics/typesmapping.txt", 0.7),
    Passage("The retrieve step embeds the query with an ONNX model and searches Milvus for the top passages.",
            "docs/rag.md", 0.6),
]

SUPPORTED = [
    "A list comprehension is written as brackets holding an expression and a for clause.",
    "It produces a new list.",
    "Dictionary keys have to be hashable and unique.",
    "Assigning a value to a key that already exists replaces the old value.",
    "The retrieve step searches Milvus after embedding the query with ONNX.",
]

INVENTED = [
    "The Eiffel Tower was completed in 1889 for the World's Fair.",
    "Python was first released by Microsoft in 2015 as a replacement for C#.",
    "Photosynthesis converts sunlight into chemical energy in plant leaves.",
    "Bananas are botanically classified as berries.",
    "The retrieve step trains a new neural network on every request using GPUs in Iceland.",
]


@pytest.fixture(scope="module")
def scores(embedder):
    def score(sentence: str) -> float:
        return check_grounding(sentence, PASSAGES, embedder).sentences[0].score

    return {"supported": [score(s) for s in SUPPORTED], "invented": [score(s) for s in INVENTED]}


def test_every_supported_sentence_outscores_every_invented_one(scores):
    assert min(scores["supported"]) > max(scores["invented"])


def test_the_default_threshold_separates_the_example_set(scores):
    threshold = GroundingParams().sentence_threshold
    assert all(s >= threshold for s in scores["supported"])
    assert all(s < threshold for s in scores["invented"])


def test_answer_flag_follows_its_sentences(embedder):
    grounded = check_grounding(" ".join(SUPPORTED), PASSAGES, embedder)
    invented = check_grounding(" ".join(SUPPORTED[:1] + INVENTED[:3]), PASSAGES, embedder)
    assert grounded.grounded and len(grounded.sentences) == len(SUPPORTED)
    assert not invented.grounded and invented.score < grounded.score


def test_edge_cases():
    for empty in ("", "\n\n \n"):  # nothing answered from the documents: counted as ungrounded
        report = check_grounding(empty, PASSAGES, embedder=None)
        assert (report.score, report.grounded) == (0.0, False)
    no_passages = check_grounding("Sets are unordered.", [], embedder=None)
    assert (no_passages.score, no_passages.grounded) == (0.0, False)
    assert split_sentences("One. Two! Three?\n\nFour") == ["One.", "Two!", "Three?", "Four"]
    assert content_words("The lists are sorted") == {"list", "sort"}


def test_answer_grounding_follows_the_config(onnx_path, tmp_path):
    import json

    from chatstack.config import RetrievalSection
    from chatstack.rag.citations import AnswerGrounding, citations_json

    enabled = RetrievalSection(enabled=True, embedder_onnx=str(onnx_path))
    report = AnswerGrounding(enabled).check(SUPPORTED[0], PASSAGES)
    assert report is not None and report.grounded
    assert AnswerGrounding(RetrievalSection(enabled=False)).check(SUPPORTED[0], PASSAGES) is None
    missing = RetrievalSection(enabled=True, embedder_onnx=str(tmp_path / "none.onnx"))
    assert AnswerGrounding(missing).check(SUPPORTED[0], PASSAGES) is None
    cited = json.loads(citations_json(PASSAGES[:2]))
    assert [(c["n"], c["source"]) for c in cited] == [(1, "python_topics/lists.txt"), (2, "python_topics/typesmapping.txt")]


def test_a_passage_vector_from_the_index_is_used_instead_of_embedding_the_passage(embedder):
    import dataclasses

    asked = []

    class Recording:
        dim = embedder.dim

        def embed(self, texts):
            asked.extend(texts)
            return embedder.embed(texts)

    vectors = embedder.embed([p.text for p in PASSAGES])
    indexed = [dataclasses.replace(p, vector=tuple(v.tolist())) for p, v in zip(PASSAGES, vectors)]
    answer = " ".join(SUPPORTED[:2])
    with_index = check_grounding(answer, indexed, Recording())
    # the answer's and the passages' sentences only; no whole passage is embedded again
    assert asked == split_sentences(answer) + [s for p in PASSAGES for s in split_sentences(p.text)]
    plain = check_grounding(answer, PASSAGES, embedder)
    assert with_index.grounded == plain.grounded
    assert abs(with_index.score - plain.score) < 1e-5
