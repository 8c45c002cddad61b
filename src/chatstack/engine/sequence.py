"""One request's state inside the engine: its tokens, KV blocks and progress."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import torch

from chatstack.backends.base import FinishReason, SamplingParams
from chatstack.backends.copy_constraint import CopyTracker


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(eq=False)
class Sequence:
    """Tokens are prompt + generated; KV exists for the first `num_computed_tokens` of them.

    Prefill, chunked prefill, decode and recompute after preemption are all the same
    operation: compute tokens `[num_computed_tokens, num_tokens)`, a budgeted chunk at a time.
    """

    seq_id: str
    token_ids: list[int]
    sampling: SamplingParams
    stop_token_ids: frozenset[int] = frozenset()
    priority: int = 0  # lower runs first; equal priorities are FCFS
    arrival: int = 0  # set by the scheduler
    status: SequenceStatus = SequenceStatus.WAITING
    block_table: list[int] = field(default_factory=list)
    num_computed_tokens: int = 0
    num_cached_tokens: int = 0  # of the computed ones, how many came from the prefix cache
    num_hashed_blocks: int = 0  # leading blocks of block_table whose hash is published (BlockManager)
    finish_reason: FinishReason | None = None
    generator: torch.Generator | None = None  # per-request seeded RNG
    copy: CopyTracker | None = None  # quote-bound decoding, when the request asked for it

    def __post_init__(self) -> None:
        self.num_prompt_tokens = len(self.token_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_completion_tokens(self) -> int:
        return self.num_tokens - self.num_prompt_tokens

    @property
    def completion_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens:]

    @property
    def num_uncomputed_tokens(self) -> int:
        return self.num_tokens - self.num_computed_tokens

    @property
    def samples_by_argmax(self) -> bool:
        """Whether the argmax of the raw logits is all its next token needs (greedy: no penalty, mask or logprobs)."""
        sampling = self.sampling
        return sampling.greedy and not sampling.penalised and sampling.logprobs is None and self.copy is None

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    def block_tokens(self, index: int, block_size: int) -> tuple[int, ...]:
        return tuple(self.token_ids[index * block_size:(index + 1) * block_size])
