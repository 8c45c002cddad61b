"""Faithfulness of answers (RAGAS-style, scored by the grounding check) and RAGAS context precision."""

import pytest

from chatstack.rag.evaluate import Evidence, QAItem, ragas_context_precision
from chatstack.rag.faithfulness import evaluate_faithfulness
from chatstack.rag.retriever import Passage
from tests.unit.rag.test_rag_evaluate import FixedRetriever

SETS = Passage("A set holds unique items. Adding an item twice keeps one copy.", "sets.md", 0.8)
TUPLES = Passage("A tuple is an immutable sequence. Its items cannot be reassigned.", "tuples.md", 0.7)
ITEMS = [QAItem("sets", "What does a set hold?", (Evidence("sets.md", "unique items"),)),
         QAItem("tuples", "Can tuple items change?", (Evidence("tuples.md", "immutable"),)),
         QAItem("none", "Who won the 1998 world cup?", (Evidence("x.md", "x"),))]
RETRIEVER = FixedRetriever({"What does a set hold?": [SETS], "Can tuple items change?": [TUPLES],
                            "Who won the 1998 world cup?": []})


def test_answers_restating_the_passages_are_faithful_and_invented_ones_are_not(embedder):
    faithful = {"What does a set hold?": "A set holds unique items. Adding an item twice keeps one copy.",
                "Can tuple items change?": "A tuple is an immutable sequence, so its items cannot be reassigned."}
    report = evaluate_faithfulness(RETRIEVER, ITEMS, lambda q, passages: faithful[q], embedder, top_k=3)
    assert report.without_passages == ("none",) and len(report.answers) == 2
    assert report.faithfulness >= 0.75 and report.grounded_share == 1.0
    invented = {"What does a set hold?": "Sets were invented by Guido in 1989 at CWI in Amsterdam.",
                "Can tuple items change?": "Tuples compile to machine code and run on the GPU."}
    report = evaluate_faithfulness(RETRIEVER, ITEMS, lambda q, passages: invented[q], embedder, top_k=3)
    assert report.faithfulness <= 0.25 and report.grounded_share == 0.0
    assert "faithfulness" in report.table() and "least faithful" in report.table()


def test_the_reader_sees_the_retrieved_passages(embedder):
    seen = {}

    def reader(question, passages):
        seen[question] = [p.source for p in passages]
        return passages[0].text

    evaluate_faithfulness(RETRIEVER, ITEMS, reader, embedder, top_k=1)
    assert seen == {"What does a set hold?": ["sets.md"], "Can tuple items change?": ["tuples.md"]}


def test_bad_arguments_are_rejected(embedder):
    with pytest.raises(ValueError, match="QA set is empty"):
        evaluate_faithfulness(RETRIEVER, [], lambda q, p: "", embedder, top_k=3)
    with pytest.raises(ValueError, match="top_k"):
        evaluate_faithfulness(RETRIEVER, ITEMS, lambda q, p: "", embedder, top_k=0)


def test_ragas_context_precision_by_hand():
    assert ragas_context_precision([True, False, False]) == 1.0
    assert ragas_context_precision([False, True, True]) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert ragas_context_precision([False, False]) == 0.0 and ragas_context_precision([]) == 0.0
