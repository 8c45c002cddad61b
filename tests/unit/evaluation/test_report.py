"""The A/B verdict rule, pairwise counting, the report files and reading a verdict back."""

from __future__ import annotations

import json

import pytest

from chatstack.alignment.reader_eval import ReaderScore
from chatstack.evaluation.judge import Grade, Outcome
from chatstack.evaluation.markdown import to_markdown
from chatstack.evaluation.perplexity import Perplexity
from chatstack.evaluation.report import EvaluationReport, ModelEvaluation, Pairwise, decide, pairwise, read_verdict
from chatstack.evaluation.run import write_report


def model(name: str, ppl: float | None = 100.0, cited: float | None = 0.5) -> ModelEvaluation:
    return ModelEvaluation(name, perplexity=None if ppl is None else Perplexity(ppl, 4.6, 1000, 3, "x"),
                           reader=None if cited is None else ReaderScore(40, cited, 20, 0.0))


def grades(*scores: float | None) -> list[Grade]:
    return [Grade(f"q{i}", Outcome.SCORED if s is not None else Outcome.UNPARSEABLE, s, "") for i, s in enumerate(scores)]


def test_pairwise_counts_wins_ties_losses_and_undecided():
    assert pairwise(grades(8, 5, 5, None, 3), grades(6, 5, 7, 4, None)) == Pairwise(1, 1, 1, 2)


@pytest.mark.parametrize("candidate, baseline, pairs, better, reason", [
    (model("c", cited=0.2), model("b", cited=0.6), Pairwise(3, 0, 1, 0), True, "judge"),
    (model("c", cited=0.9), model("b"), Pairwise(1, 0, 3, 0), False, "judge"),
    (model("c", cited=0.6), model("b", cited=0.5), Pairwise(2, 1, 2, 0), True, "reader score"),
    (model("c", cited=0.4), model("b", cited=0.5), None, False, "reader score"),
    (model("c", ppl=90.0), model("b"), None, True, "perplexity"),
    (model("c", ppl=111.0, cited=0.9), model("b"), Pairwise(5, 0, 0, 0), False, "1.10x"),
    (model("c", ppl=None, cited=None), model("b", ppl=None, cited=None), None, False, "no measured difference"),
])
def test_verdict_rule(candidate, baseline, pairs, better, reason):
    verdict = decide(candidate, baseline, pairs)
    assert verdict.candidate_better is better and reason in verdict.reason


def test_report_files_round_trip_the_verdict(tmp_path):
    verdict = decide(model("c", cited=0.7), model("b"), None)
    report = EvaluationReport("2026-01-01T00:00:00+00:00", {"reader_count": 60}, model(str(tmp_path / "cand"), cited=0.7),
                              model("base"), None, verdict)
    json_path, md_path = write_report(report, tmp_path / "out")
    raw = json.loads(json_path.read_text())
    assert raw["candidate"]["reader"]["cited_correctly"] == 0.7 and raw["verdict"]["candidate_better"] is True
    candidate, read_back = read_verdict(json_path)
    assert candidate == tmp_path / "cand" and read_back == verdict
    markdown = md_path.read_text()
    assert "| reader: cites the right passage | 0.700 | 0.500 |" in markdown and "Verdict: candidate better" in markdown
    assert to_markdown(report) == markdown


def test_a_report_without_a_verdict_cannot_decide_a_registration(tmp_path):
    report = EvaluationReport("t", {}, model("c"))
    json_path, _ = write_report(report, tmp_path)
    with pytest.raises(ValueError, match="no verdict"):
        read_verdict(json_path)
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="not a `chatstack eval model` report"):
        read_verdict(tmp_path / "other.json")
    with pytest.raises(ValueError, match="does not exist"):
        read_verdict(tmp_path / "missing.json")
