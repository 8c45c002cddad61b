"""What `chatstack eval model` reports, the rule that calls a candidate better, and the Markdown view."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from chatstack.alignment.reader_eval import ReaderScore
from chatstack.evaluation.judge import Grade
from chatstack.evaluation.perplexity import Perplexity
from chatstack.evaluation.preference import PreferenceResult

PERPLEXITY_TOLERANCE = 1.10  # a better candidate may not raise held-out perplexity by more than 10 %
RULE = ("candidate is better when (1) a judge ran and it wins more decided pairs than it loses, or, without a judge "
        "or with wins == losses, (2) its reader score (share citing the right passage + share saying 'not covered') "
        "is higher, or equal with lower held-out perplexity; and in every case (3) its held-out perplexity is at most "
        f"{PERPLEXITY_TOLERANCE:.2f}x the baseline's")


@dataclass(frozen=True)
class JudgeSummary:
    judge: str
    mean_score: float | None  # over scored answers
    scored: int
    unparseable: int
    failed: int
    mean_by_category: dict[str, float]
    grades: list[Grade]


@dataclass(frozen=True)
class ModelEvaluation:
    model: str
    perplexity: Perplexity | None = None
    preference: PreferenceResult | None = None
    reader: ReaderScore | None = None
    judge: JudgeSummary | None = None
    answers: dict[str, list[str]] = field(default_factory=dict)  # question id -> reply per turn
    skipped: dict[str, str] = field(default_factory=dict)  # metric -> why it was not measured


@dataclass(frozen=True)
class Pairwise:
    wins: int
    ties: int
    losses: int
    undecided: int  # either answer had no score


@dataclass(frozen=True)
class Verdict:
    candidate_better: bool
    reason: str
    rule: str = RULE


@dataclass(frozen=True)
class EvaluationReport:
    created: str
    settings: dict
    candidate: ModelEvaluation
    baseline: ModelEvaluation | None = None
    pairwise: Pairwise | None = None
    verdict: Verdict | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, default=str)


def reader_total(score: ReaderScore | None) -> float | None:
    return None if score is None else score.cited_correctly + score.said_not_covered


def pairwise(candidate: list[Grade], baseline: list[Grade]) -> Pairwise:
    by_id = {g.question_id: g for g in baseline}
    wins = ties = losses = undecided = 0
    for mine in candidate:
        theirs = by_id.get(mine.question_id)
        if theirs is None or mine.score is None or theirs.score is None:
            undecided += 1
        elif mine.score > theirs.score:
            wins += 1
        elif mine.score < theirs.score:
            losses += 1
        else:
            ties += 1
    return Pairwise(wins, ties, losses, undecided)


def decide(candidate: ModelEvaluation, baseline: ModelEvaluation, pairs: Pairwise | None) -> Verdict:
    """Apply RULE; the reason names the figures that decided."""
    ppl_c = candidate.perplexity.perplexity if candidate.perplexity else None
    ppl_b = baseline.perplexity.perplexity if baseline.perplexity else None
    if ppl_c is not None and ppl_b is not None and ppl_c > PERPLEXITY_TOLERANCE * ppl_b:
        return Verdict(False, f"held-out perplexity {ppl_c:.2f} is more than {PERPLEXITY_TOLERANCE:.2f}x "
                              f"the baseline's {ppl_b:.2f}")
    if pairs is not None and pairs.wins != pairs.losses:
        return Verdict(pairs.wins > pairs.losses, f"judge: {pairs.wins} wins, {pairs.ties} ties, "
                                                  f"{pairs.losses} losses")
    read_c, read_b = reader_total(candidate.reader), reader_total(baseline.reader)
    if read_c is not None and read_b is not None and read_c != read_b:
        return Verdict(read_c > read_b, f"reader score {read_c:.3f} vs baseline {read_b:.3f}")
    if ppl_c is not None and ppl_b is not None and ppl_c != ppl_b:
        return Verdict(ppl_c < ppl_b, f"equal on judge and reader; held-out perplexity {ppl_c:.2f} vs {ppl_b:.2f}")
    return Verdict(False, "no measured difference: the baseline stays")


def read_verdict(path: Path) -> tuple[Path, Verdict]:
    """(candidate model folder, verdict) from a report written by `chatstack eval model`."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        candidate, verdict = Path(raw["candidate"]["model"]), raw["verdict"]
    except FileNotFoundError:
        raise ValueError(f"report: {path} does not exist") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f"report: {path} is not a `chatstack eval model` report") from None
    if not isinstance(verdict, dict) or not isinstance(verdict.get("candidate_better"), bool):
        raise ValueError(f"report: {path} has no verdict (it was made without --baseline)")
    return candidate, Verdict(verdict["candidate_better"], str(verdict.get("reason", "")), str(verdict.get("rule", RULE)))
