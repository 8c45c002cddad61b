"""RAGAS-style faithfulness of generated answers, computed locally with the grounding scorer.

For each QA question: retrieve passages as serving does, have a reader model answer from
them, and count how many of the answer's claims the passages support. RAGAS extracts
claims and checks each with an LLM; here a claim is an answer sentence and the check is
chatstack's grounding scorer (embedding similarity + lexical overlap, `grounding.py`), the
same one that sets `grounded` on served answers. Faithfulness of one answer = supported
claims / claims; the report averages it over the questions that got passages.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable

from chatstack.rag.evaluate import QAItem
from chatstack.rag.grounding import GroundingParams, check_grounding
from chatstack.rag.retriever import Passage, Retriever

# (question, passages) → the reader's answer
AnswerFn = Callable[[str, list[Passage]], str]


@dataclass(frozen=True)
class AnswerFaithfulness:
    qid: str
    answer: str
    claims: int
    supported: int
    grounded: bool  # the serving verdict (share of supported sentences ≥ min_supported_share)

    @property
    def faithfulness(self) -> float:
        return self.supported / self.claims if self.claims else 1.0


@dataclass(frozen=True)
class FaithfulnessReport:
    answers: tuple[AnswerFaithfulness, ...]
    without_passages: tuple[str, ...]  # question ids that retrieved nothing above the threshold

    @property
    def faithfulness(self) -> float:
        return statistics.fmean(a.faithfulness for a in self.answers) if self.answers else 0.0

    @property
    def grounded_share(self) -> float:
        return sum(a.grounded for a in self.answers) / len(self.answers) if self.answers else 0.0

    def table(self) -> str:
        claims = sum(a.claims for a in self.answers)
        lines = [f"answers: {len(self.answers)} ({claims} claims); no passages: {len(self.without_passages)}",
                 f"faithfulness (mean share of supported claims): {self.faithfulness:.3f}",
                 f"grounded answers (serving verdict): {self.grounded_share:.3f}"]
        worst = sorted(self.answers, key=lambda a: a.faithfulness)[:3]
        lines += [f"  least faithful {a.qid}: {a.supported}/{a.claims}: {a.answer[:100]!r}" for a in worst]
        return "\n".join(lines)


def evaluate_faithfulness(retriever: Retriever, items: list[QAItem], answer: AnswerFn, embedder, top_k: int,
                          params: GroundingParams = GroundingParams()) -> FaithfulnessReport:
    """Answer every question from its top-`top_k` passages and score the answers' claims against them."""
    if not items:
        raise ValueError("the QA set is empty")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    scored, empty = [], []
    for item in items:
        passages = retriever.search(item.question, top_k)
        if not passages:
            empty.append(item.qid)
            continue
        text = answer(item.question, passages)
        report = check_grounding(text, passages, embedder, params)
        scored.append(AnswerFaithfulness(item.qid, text, len(report.sentences),
                                         sum(s.supported for s in report.sentences), report.grounded))
    return FaithfulnessReport(tuple(scored), tuple(empty))


def local_reader(model_dir, system_prompt: str, max_new_tokens: int = 96) -> AnswerFn:
    """Greedy answers from a saved chat model, prompted with the passages as serving prompts them."""
    from pathlib import Path

    from chatstack.evaluation.answering import LocalAnswerer
    from chatstack.evaluation.models import load_model
    from chatstack.rag.retriever import with_passages
    from chatstack.text.chat_template import Message

    loaded = load_model(Path(model_dir), "model.dir")
    loaded.model.generation_config.use_cache = True  # the demo config turns the KV cache off (training)
    reader = LocalAnswerer(loaded, max_new_tokens)
    return lambda question, passages: reader.reply(
        [Message("system", with_passages(system_prompt, passages)), Message("user", question)])
