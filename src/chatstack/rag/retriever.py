"""The retrieval interface used by the `retrieve` step, and prompt assembly with passages."""

from __future__ import annotations

import abc
import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Passage:
    text: str
    source: str
    score: float


class Retriever(abc.ABC):
    @abc.abstractmethod
    def search(self, query: str, top_k: int) -> list[Passage]:
        """The best `top_k` passages for `query`, best first."""


class EmptyRetriever(Retriever):
    """The index with no documents: every query retrieves nothing."""

    def search(self, query: str, top_k: int) -> list[Passage]:
        return []


def passages_to_json(passages: list[Passage]) -> str:
    return json.dumps([asdict(p) for p in passages], ensure_ascii=False)


def passages_from_json(text: str) -> list[Passage]:
    try:
        items = json.loads(text)
        return [Passage(str(i["text"]), str(i["source"]), float(i["score"])) for i in items]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"passages is not a JSON list of passages: {exc}") from None


def with_passages(system_prompt: str, passages: list[Passage]) -> str:
    """The system prompt extended with numbered reference passages."""
    if not passages:
        return system_prompt
    numbered = "\n".join(f"[{i}] ({p.source}) {p.text}" for i, p in enumerate(passages, start=1))
    return f"{system_prompt}\n\nUse these references when they help, citing them as [n]:\n{numbered}"
