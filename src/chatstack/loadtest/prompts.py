"""The load test's prompt mix: short chat, questions over the demo corpus, multi-turn sessions.

The mix is a YAML file (`loadtest/prompts.yaml`); each Locust user draws requests from it
by weight and walks multi-turn conversations turn by turn under its own session id.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from chatstack.client import ChatOptions

KINDS = ("short", "rag", "multi_turn")


@dataclass(frozen=True)
class PromptMix:
    short: tuple[str, ...]
    rag: tuple[str, ...]
    conversations: tuple[tuple[str, ...], ...]
    weights: tuple[float, float, float]  # short, rag, multi_turn
    max_tokens: int = 32
    temperature: float = 0.0
    # every reply runs to max_tokens (as vLLM's serving benchmark runs): output lengths, and so load, stay the same
    # from one model version to the next, and a model that ends a reply at once still streams a first token
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        pools = {"short": self.short, "rag": self.rag, "multi_turn": self.conversations}
        for kind, weight in zip(KINDS, self.weights):
            if weight < 0:
                raise ValueError(f"{kind}.weight must be >= 0, got {weight}")
            if weight > 0 and not pools[kind]:
                raise ValueError(f"{kind} has weight {weight} but no prompts")
        if not sum(self.weights) > 0:
            raise ValueError("at least one of short/rag/multi_turn needs a weight > 0")
        if any(not turns or not all(isinstance(t, str) and t.strip() for t in turns) for turns in self.conversations):
            raise ValueError("multi_turn.conversations must be non-empty lists of non-empty strings")
        if any(not isinstance(p, str) or not p.strip() for p in self.short + self.rag):
            raise ValueError("short.prompts and rag.prompts must be non-empty strings")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not isinstance(self.ignore_eos, bool):
            raise ValueError(f"ignore_eos must be true or false, got {self.ignore_eos!r}")

    def chat_options(self, session_id: str | None) -> ChatOptions:
        """The request fields every turn of this mix sends."""
        return ChatOptions(session_id=session_id, max_tokens=self.max_tokens, temperature=self.temperature,
                           ignore_eos=self.ignore_eos or None)

    @classmethod
    def load(cls, path: Path) -> "PromptMix":
        if not path.is_file():
            raise ValueError(f"prompt mix file {path} does not exist")
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        unknown = set(raw) - {"short", "rag", "multi_turn", "max_tokens", "temperature", "ignore_eos"}
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
        sections = {kind: raw.get(kind) or {} for kind in KINDS}
        return cls(
            short=tuple(sections["short"].get("prompts", ())),
            rag=tuple(sections["rag"].get("prompts", ())),
            conversations=tuple(tuple(c) for c in sections["multi_turn"].get("conversations", ())),
            weights=tuple(float(sections[k].get("weight", 0)) for k in KINDS),
            max_tokens=int(raw.get("max_tokens", 32)),
            temperature=float(raw.get("temperature", 0.0)),
            ignore_eos=raw.get("ignore_eos", False),
        )


@dataclass(frozen=True)
class ChatTurn:
    kind: str
    text: str
    session_id: str | None  # set for multi-turn conversations only


class PromptCursor:
    """One user's walk through the mix: a finished conversation makes room for a new draw."""

    def __init__(self, mix: PromptMix, rng: random.Random):
        self.mix, self.rng = mix, rng
        self._turns: list[str] = []
        self._session_id: str | None = None

    def next_turn(self) -> ChatTurn:
        if self._turns:
            return ChatTurn("multi_turn", self._turns.pop(0), self._session_id)
        kind = self.rng.choices(KINDS, weights=self.mix.weights)[0]
        if kind == "multi_turn":
            self._turns = list(self.rng.choice(self.mix.conversations))
            self._session_id = f"loadtest-{uuid.uuid4().hex}"
            return self.next_turn()
        pool = self.mix.short if kind == "short" else self.mix.rag
        return ChatTurn(kind, self.rng.choice(pool), None)
