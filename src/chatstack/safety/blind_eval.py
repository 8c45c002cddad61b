"""The blind held-out set and the cascade latency comparison, for `chatstack eval safety`.

`evaluate_blind` scores the literal prompts of data/safety/blind.yaml, dropping
any that also occur verbatim in the training expansion (so the set stays
held-out even when a training template happens to produce the same sentence).
`compare_cascade` times the configured two-stage moderator against the same
moderator forced to run MiniLM on every request, in interleaved rounds of one
run, because timings on a shared machine are only comparable side by side.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from chatstack.safety.classifier import Cascade, SafetyClassifier
from chatstack.safety.dataset import Example
from chatstack.safety.moderator import Moderator
from chatstack.safety.policy import BENIGN, CATEGORIES

ALWAYS_ESCALATE = Cascade(escalate_from=0.0, escalate_below=1.01)


@dataclass(frozen=True)
class BlindReport:
    examples: int
    dropped_as_training_duplicates: int
    harmful_block_rate: float
    benign_false_refusal_rate: float
    per_category: dict[str, tuple[float, float, int]]  # category → (precision, recall, support)
    escalation_rate: float
    mistakes: list[str]  # "label → predicted: text"


def _share(hits: int, total: int) -> float:
    return hits / total if total else 0.0


def evaluate_blind(moderator: Moderator, examples: list[Example], training: list[Example]) -> BlindReport:
    seen = {e.text.casefold() for e in training}
    kept = [e for e in examples if e.text.casefold() not in seen]
    results = [moderator.check_input(e.text) for e in kept]
    predicted = [r.category if r.blocked else BENIGN for r in results]
    labels = [e.label for e in kept]
    per_category = {}
    for name in CATEGORIES:
        hits = sum(l == name and p == name for l, p in zip(labels, predicted))
        per_category[name] = (_share(hits, predicted.count(name)), _share(hits, labels.count(name)), labels.count(name))
    harmful = [p != BENIGN for l, p in zip(labels, predicted) if l != BENIGN]
    benign = [p != BENIGN for l, p in zip(labels, predicted) if l == BENIGN]
    return BlindReport(
        examples=len(kept),
        dropped_as_training_duplicates=len(examples) - len(kept),
        harmful_block_rate=_share(sum(harmful), len(harmful)),
        benign_false_refusal_rate=_share(sum(benign), len(benign)),
        per_category=per_category,
        escalation_rate=_share(sum(r.escalated for r in results), len(results)),
        mistakes=[f"{l} → {p}: {e.text}" for e, l, p in zip(kept, labels, predicted) if l != p],
    )


def format_blind(report: BlindReport) -> str:
    lines = [
        f"blind set ({report.examples} prompts; {report.dropped_as_training_duplicates} dropped as training duplicates):",
        f"  harmful block rate:      {report.harmful_block_rate:6.1%}",
        f"  benign false refusals:   {report.benign_false_refusal_rate:6.1%}",
        f"  MiniLM stage on:         {report.escalation_rate:6.1%} of prompts",
        "  category          precision  recall  support",
    ]
    lines += [f"  {name:<17} {p:9.1%} {r:7.1%} {n:8d}" for name, (p, r, n) in report.per_category.items()]
    return "\n".join(lines)


@dataclass(frozen=True)
class LatencyComparison:
    requests: int
    cascade_cpu_ms: tuple[float, float, float]  # median, p90, mean CPU time per request
    always_minilm_cpu_ms: tuple[float, float, float]
    cascade_wall_median_ms: float
    always_minilm_wall_median_ms: float


def _summary(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[int(0.9 * (len(ordered) - 1))], statistics.mean(ordered)


def compare_cascade(moderator: Moderator, texts: list[str], round_size: int = 25) -> LatencyComparison:
    """CPU and wall ms per `check_input`: the configured cascade vs MiniLM on every request."""
    c = moderator.classifier
    always = Moderator(SafetyClassifier(c.head, c.static, c.embedder, ALWAYS_ESCALATE), moderator.policy,
                       max_input_chars=moderator.max_input_chars)
    timings: dict[str, tuple[list[float], list[float]]] = {"cascade": ([], []), "always": ([], [])}
    for start in range(0, len(texts), round_size):
        order = [("cascade", moderator), ("always", always)]
        for name, which in order if (start // round_size) % 2 == 0 else order[::-1]:
            for text in texts[start:start + round_size]:
                cpu_started, started = time.process_time(), time.perf_counter()
                which.check_input(text)
                timings[name][0].append((time.process_time() - cpu_started) * 1000)
                timings[name][1].append((time.perf_counter() - started) * 1000)
    return LatencyComparison(len(texts), _summary(timings["cascade"][0]), _summary(timings["always"][0]),
                             statistics.median(timings["cascade"][1]), statistics.median(timings["always"][1]))


def format_comparison(result: LatencyComparison) -> str:
    cascade, always = result.cascade_cpu_ms, result.always_minilm_cpu_ms
    return "\n".join([
        f"latency, interleaved in this run ({result.requests} requests each), CPU ms median / p90 / mean:",
        f"  two-stage cascade:       {cascade[0]:.2f} / {cascade[1]:.2f} / {cascade[2]:.2f}  "
        f"(wall median {result.cascade_wall_median_ms:.2f})",
        f"  MiniLM on every request: {always[0]:.2f} / {always[1]:.2f} / {always[2]:.2f}  "
        f"(wall median {result.always_minilm_wall_median_ms:.2f})",
        f"  ratio (MiniLM / cascade), CPU median: {always[0] / cascade[0]:.2f}x, mean: {always[2] / cascade[2]:.2f}x",
    ])
