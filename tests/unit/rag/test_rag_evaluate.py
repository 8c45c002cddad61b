import json

import pytest

from chatstack.rag.evaluate import DEFAULT_QA, evaluate, load_qa
from chatstack.rag.retriever import Passage, Retriever


class FixedRetriever(Retriever):
    """Returns a fixed ranking per question: enough to check the metrics by hand."""

    def __init__(self, rankings: dict[str, list[Passage]]):
        self.rankings = rankings

    def search(self, query: str, top_k: int) -> list[Passage]:
        return self.rankings[query][:top_k]


def write_qa(tmp_path, items):
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps(i) for i in items))
    return path


def test_recall_mrr_and_precision_by_hand(tmp_path):
    qa = load_qa(write_qa(tmp_path, [
        {"id": "q1", "question": "a?", "evidence": [{"source": "a.md", "phrase": "alpha  beta"}]},
        {"id": "q2", "question": "b?", "evidence": [{"source": "b.md", "phrase": "gamma"}]},
        {"id": "q3", "question": "c?", "evidence": [{"source": "c.md", "phrase": "delta"}]},
    ]))
    noise = Passage("nothing", "x.md", 0.1)
    retriever = FixedRetriever({
        "a?": [Passage("Alpha\nbeta here", "a.md", 0.9), noise, noise],
        "b?": [noise, noise, Passage("gamma", "b.md", 0.5)],
        "c?": [Passage("delta", "wrong.md", 0.9), noise, noise],  # right text, wrong source
    })
    report = evaluate(retriever, qa, ks=(1, 3))
    assert report.recall_at == {1: pytest.approx(1 / 3), 3: pytest.approx(2 / 3)}
    assert report.mrr == pytest.approx((1 + 1 / 3) / 3)
    assert report.precision_at[1] == pytest.approx(1 / 3) and report.misses == ("q3",)


def test_malformed_qa_line_names_the_line(tmp_path):
    with pytest.raises(ValueError, match=r"qa.jsonl:2: not a QA item"):
        load_qa(write_qa(tmp_path, [{"id": "q1", "question": "?", "evidence": [{"source": "s", "phrase": "p"}]},
                                    {"id": "q2", "question": "?"}]))


def test_the_demo_qa_set_is_well_formed():
    items = load_qa(DEFAULT_QA)
    assert len(items) >= 40 and len({i.qid for i in items}) == len(items)
