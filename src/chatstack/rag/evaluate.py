"""Retrieval quality on a QA set: recall@k, MRR and context precision@k.

A QA item names the passages that answer it by source file and an evidence phrase
found in the answering chunk, not by chunk id: ids change whenever a document or the
chunking parameters change, the evidence does not. A retrieved passage is relevant
when its source matches and its text contains the evidence (whitespace-insensitive).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from chatstack import project
from chatstack.rag.retriever import Passage, Retriever

DEFAULT_QA = project.ROOT / "data" / "rag_eval" / "demo_qa.jsonl"


@dataclass(frozen=True)
class Evidence:
    source: str
    phrase: str


@dataclass(frozen=True)
class QAItem:
    qid: str
    question: str
    evidence: tuple[Evidence, ...]


@dataclass(frozen=True)
class EvalReport:
    questions: int
    recall_at: dict[int, float]  # share of questions with a relevant passage in the top k
    precision_at: dict[int, float]  # mean share of the top k that is relevant
    ragas_precision_at: dict[int, float]  # RAGAS context precision@k: mean precision at each relevant rank ≤ k
    mrr: float  # mean reciprocal rank of the first relevant passage (0 when none in the top max k)
    misses: tuple[str, ...]  # question ids with no relevant passage in the top max k

    def table(self) -> str:
        lines = [f"questions: {self.questions}", "k   recall@k  context_precision@k  ragas_context_precision@k"]
        lines += [f"{k:<3} {self.recall_at[k]:.3f}     {self.precision_at[k]:.3f}                "
                  f"{self.ragas_precision_at[k]:.3f}" for k in sorted(self.recall_at)]
        lines.append(f"MRR@{max(self.recall_at)}: {self.mrr:.3f}")
        if self.misses:
            lines.append(f"missed: {', '.join(self.misses)}")
        return "\n".join(lines)


def load_qa(path: Path) -> list[QAItem]:
    items = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            evidence = tuple(Evidence(e["source"], e["phrase"]) for e in raw["evidence"])
            items.append(QAItem(str(raw["id"]), raw["question"], evidence))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a QA item ({exc})") from None
        if not evidence:
            raise ValueError(f"{path}:{number}: evidence must not be empty")
    return items


def _normalised(text: str) -> str:
    return " ".join(text.split()).lower()


def is_relevant(passage: Passage, item: QAItem) -> bool:
    text = _normalised(passage.text)
    return any(passage.source == e.source and _normalised(e.phrase) in text for e in item.evidence)


def first_relevant_rank(passages: list[Passage], item: QAItem) -> int | None:
    return next((rank for rank, p in enumerate(passages, start=1) if is_relevant(p, item)), None)


def ragas_context_precision(flags: list[bool]) -> float:
    """Σ_k precision@k · relevant_k / relevant passages (0 when none): relevant passages ranked early score high."""
    hits, total = 0, 0.0
    for rank, relevant in enumerate(flags, start=1):
        if relevant:
            hits += 1
            total += hits / rank
    return total / hits if hits else 0.0


def evaluate(retriever: Retriever, items: list[QAItem], ks: tuple[int, ...] = (1, 3, 5, 10)) -> EvalReport:
    if not items:
        raise ValueError("the QA set is empty")
    depth = max(ks)
    ranks, relevant_flags = [], []
    for item in items:
        passages = retriever.search(item.question, depth)
        ranks.append(first_relevant_rank(passages, item))
        relevant_flags.append([is_relevant(p, item) for p in passages])
    n = len(items)
    return EvalReport(
        questions=n,
        recall_at={k: sum(r is not None and r <= k for r in ranks) / n for k in ks},
        precision_at={k: sum(sum(flags[:k]) / k for flags in relevant_flags) / n for k in ks},
        ragas_precision_at={k: sum(ragas_context_precision(flags[:k]) for flags in relevant_flags) / n for k in ks},
        mrr=sum(1 / r for r in ranks if r is not None) / n,
        misses=tuple(item.qid for item, r in zip(items, ranks) if r is None),
    )
