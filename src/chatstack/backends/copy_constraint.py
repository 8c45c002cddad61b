"""Quote-bound decoding: once an answer starts quoting a passage, it quotes it exactly.

The demo reader is trained to answer with a passage's sentence and a citation, "... [n]",
but a model this small drifts out of a quote after a few tokens and the rest reads as noise.
This constraint, a logits mask like guided decoding's, lets the model decide everything a
reader decides (whether to quote at all, which passage, where to start, when to stop) and
takes away only the drift:

- **free**: no mask. Once the last `enter_after` generated tokens equal a span of a
  passage (as tokenized in the prompt), decoding is *quoting* that span; so is it when the
  answer's first token opens one of the passage's sentences (an `opening`: the sentence's first
  word as it starts a reply, without the space it has inside the passage);
- **quoting**: only tokens that continue a span matched so far are allowed; where the quoted
  span ends a sentence, so are the stop tokens and the first token of a citation;
- **citing**: the citation is finished with the number of a passage the quote came from,
  then decoding is free again (the model may end, or quote again).

Backends see token ids only: the constraint arrives with the request (`CopyConstraint`, built
where the prompt is rendered, `rag/passage_copy.py`) and each backend keeps a `CopyTracker`
per request, fed the tokens generated so far, so it follows a preempted-and-resumed sequence too.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CopySource:
    """One passage as it sits in the prompt: its token ids, the positions (indices into
    `token_ids`) whose token ends a sentence, the tokens that cite it (" [n]"), and its
    openings: (token that starts a reply with a sentence's first word, that word's position)."""

    token_ids: tuple[int, ...]
    sentence_ends: frozenset[int]
    citation: tuple[int, ...]
    openings: frozenset[tuple[int, int]] = frozenset()

    def __post_init__(self) -> None:
        if not self.token_ids or not self.citation:
            raise ValueError("a copy source needs token ids and citation tokens")
        if any(not 0 <= i < len(self.token_ids) for i in self.sentence_ends):
            raise ValueError("sentence_ends must index token_ids")
        if any(not 0 <= i < len(self.token_ids) for _, i in self.openings):
            raise ValueError("openings must index token_ids")


@dataclass(frozen=True)
class CopyConstraint:
    sources: tuple[CopySource, ...]
    enter_after: int = 2  # generated tokens that must match a passage span before quoting binds

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("a copy constraint needs at least one source")
        if self.enter_after < 1:
            raise ValueError(f"enter_after must be >= 1, got {self.enter_after}")

    @functools.cached_property
    def spans_by_run(self) -> dict[tuple[int, ...], list[tuple[int, int]]]:
        """Every run of `enter_after` source tokens → where it occurs: (source, position of its last token)."""
        n, index = self.enter_after, {}
        for s, source in enumerate(self.sources):
            ids = source.token_ids
            for i in range(len(ids) - n + 1):
                index.setdefault(ids[i:i + n], []).append((s, i + n - 1))
        return index


class Mode(enum.Enum):
    FREE = "free"
    QUOTING = "quoting"
    CITING = "citing"


class CopyTracker:
    """One request's place in the constraint; `allowed` after `sync` with its generated tokens."""

    def __init__(self, constraint: CopyConstraint, stop_token_ids: tuple[int, ...] | frozenset[int]):
        self.constraint = constraint
        self.stop_token_ids = frozenset(stop_token_ids)
        self.mode = Mode.FREE
        self.seen = 0  # generated tokens consumed so far
        self.free_run: list[int] = []  # tokens generated since decoding was last free
        self.spans: set[tuple[int, int]] = set()  # quoting: (source, position of the last quoted token)
        self.citing: set[int] = set()  # citing: sources whose citation is still possible
        self.cited = 0  # citing: citation tokens emitted

    def sync(self, generated: list[int] | tuple[int, ...]) -> None:
        """Consume the tokens generated since the last call."""
        for token in generated[self.seen:]:
            self._advance(token)
            self.seen += 1

    def allowed(self) -> list[int] | None:
        """Token ids the next token must be one of; None when decoding is free."""
        sources = self.constraint.sources
        if self.mode is Mode.FREE:
            return None
        if self.mode is Mode.CITING:
            return sorted({sources[s].citation[self.cited] for s in self.citing})
        tokens = {sources[s].token_ids[i + 1] for s, i in self.spans if i + 1 < len(sources[s].token_ids)}
        if ending := self._ending_spans():
            tokens |= self.stop_token_ids | {sources[s].citation[0] for s in ending}
        return sorted(tokens)

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """logits (vocab,) with every token the constraint rules out at -inf."""
        allowed = self.allowed()
        if allowed is None:
            return logits
        masked = torch.full_like(logits, float("-inf"))
        index = torch.tensor(allowed, device=logits.device)
        return masked.index_copy_(0, index, logits.index_select(0, index))

    def _ending_spans(self) -> set[int]:
        """Quoting: the sources whose matched span ends a sentence, or the passage."""
        sources = self.constraint.sources
        return {s for s, i in self.spans if i in sources[s].sentence_ends or i + 1 == len(sources[s].token_ids)}

    def _advance(self, token: int) -> None:
        sources = self.constraint.sources
        if self.mode is Mode.QUOTING:
            followed = {(s, i + 1) for s, i in self.spans
                        if i + 1 < len(sources[s].token_ids) and sources[s].token_ids[i + 1] == token}
            if followed:
                self.spans = followed
                return
            ending = self._ending_spans()
            cites = {s for s in ending if sources[s].citation[0] == token}
            self.spans = set()
            if cites:
                self.mode, self.citing, self.cited = Mode.CITING, cites, 0
                self._advance_citation()
                return
            self._free()  # a stop token (or a token the mask did not allow: the request ends or runs free)
            return
        if self.mode is Mode.CITING:
            self.citing = {s for s in self.citing if sources[s].citation[self.cited] == token}
            self._advance_citation()
            return
        self.free_run.append(token)
        if self.seen == 0:  # the answer's first token
            self.spans = {(s, i) for s, source in enumerate(sources) for t, i in source.openings if t == token}
            if self.spans:
                self.mode = Mode.QUOTING
                return
        run = tuple(self.free_run[-self.constraint.enter_after:])
        if len(run) == self.constraint.enter_after:
            self.spans = set(self.constraint.spans_by_run.get(run, ()))
            if self.spans:
                self.mode = Mode.QUOTING

    def _advance_citation(self) -> None:
        self.cited += 1
        sources = self.constraint.sources
        if not self.citing or any(self.cited == len(sources[s].citation) for s in self.citing):
            self._free()

    def _free(self) -> None:
        self.mode, self.free_run, self.spans, self.citing, self.cited = Mode.FREE, [], set(), set(), 0

