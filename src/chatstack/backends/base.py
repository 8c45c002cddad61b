"""The `GenerationBackend` interface: submit / stream / cancel over token ids.

Backends see token ids only; text (detokenization, stop strings) is handled
above them, so every backend streams identical text for identical tokens.
"""

from __future__ import annotations

import abc
import enum
import math
from dataclasses import dataclass
from typing import Iterator

from chatstack.backends.copy_constraint import CopyConstraint


class FinishReason(str, enum.Enum):
    STOP = "stop"
    LENGTH = "length"
    CANCELLED = "cancelled"
    CONTENT_FILTER = "content_filter"
    ERROR = "error"


MAX_PENALTY = 2.0  # presence / frequency penalty range, as in the OpenAI API
MAX_LOGPROBS = 20  # the most top alternatives any backend can be configured to return


@dataclass(frozen=True)
class SamplingParams:
    """Per-request decoding settings; temperature 0 means greedy."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    ignore_eos: bool = False
    min_p: float = 0.0  # drop tokens below min_p x the top token's probability; 0 disables
    repetition_penalty: float = 1.0  # HF semantics over prompt + output; 1 disables
    presence_penalty: float = 0.0  # subtracted once from every token already generated
    frequency_penalty: float = 0.0  # subtracted once per time a token was generated
    logprobs: int | None = None  # None: off; N: the chosen token's logprob + the N most likely

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        if self.seed is not None and not 0 <= self.seed < 2**64:
            raise ValueError(f"seed must be in [0, 2**64), got {self.seed}")
        if not 0 <= self.min_p <= 1:  # also rejects NaN
            raise ValueError(f"min_p must be in [0, 1] (0 disables it), got {self.min_p}")
        if not (math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0):
            raise ValueError(f"repetition_penalty must be > 0 (1 disables it), got {self.repetition_penalty}")
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            if not -MAX_PENALTY <= value <= MAX_PENALTY:
                raise ValueError(f"{name} must be in [-{MAX_PENALTY}, {MAX_PENALTY}] (0 disables it), got {value}")
        if self.logprobs is not None and not 0 <= self.logprobs <= MAX_LOGPROBS:
            raise ValueError(f"logprobs must be in [0, {MAX_LOGPROBS}] top alternatives, got {self.logprobs}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def penalised(self) -> bool:
        return self.repetition_penalty != 1 or self.presence_penalty != 0 or self.frequency_penalty != 0


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    prompt_token_ids: tuple[int, ...]
    sampling: SamplingParams
    stop_token_ids: tuple[int, ...] = ()
    copy: CopyConstraint | None = None  # quote-bound decoding over the prompt's passages (copy_constraint.py)


@dataclass(frozen=True)
class TokenLogprob:
    """The chosen token's log-probability under the model (before penalties and temperature),
    and the `SamplingParams.logprobs` most likely tokens as (token id, logprob), best first."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class GenerationOutput:
    """Token ids produced since the previous output; `finish_reason` set on the last one."""

    request_id: str
    new_token_ids: tuple[int, ...]
    finish_reason: FinishReason | None = None
    error: str | None = None
    logprobs: tuple[TokenLogprob, ...] = ()  # one per new token when the request asked for logprobs


class GenerationBackend(abc.ABC):
    """An engine that generates token ids for many requests at once."""

    @property
    @abc.abstractmethod
    def context_window(self) -> int:
        """Maximum prompt + generated tokens per sequence."""

    @abc.abstractmethod
    def submit(self, request: GenerationRequest) -> None:
        """Admit a request; raises ValueError for a request that can never run."""

    @abc.abstractmethod
    def stream(self, request_id: str, coalesce: bool = False) -> Iterator[GenerationOutput]:
        """Yield outputs for a submitted request until one carries a finish reason.

        By default one output per generated token. With `coalesce`, the outputs already waiting
        when the reader asks are merged into one, so a reader that fell behind (a busy server
        sending one response per delta) catches up in one step instead of one per token."""

    @abc.abstractmethod
    def cancel(self, request_id: str) -> None:
        """Stop a request; its stream ends with FinishReason.CANCELLED. Unknown ids are ignored."""

    def shutdown(self) -> None:
        """Release threads and memory."""

    max_logprobs: int = MAX_LOGPROBS  # the most top alternatives a request may ask for

    def validate(self, request: GenerationRequest) -> None:
        logprobs = request.sampling.logprobs
        if logprobs is not None and logprobs > self.max_logprobs:
            raise ValueError(f"logprobs must be at most {self.max_logprobs} (the backend's max_logprobs), got {logprobs}")
        prompt = len(request.prompt_token_ids)
        if prompt == 0:
            raise ValueError("text_input produced an empty prompt")
        if prompt + request.sampling.max_tokens > self.context_window:
            raise ValueError(
                f"text_input is too long: {prompt} prompt tokens + max_tokens {request.sampling.max_tokens} "
                f"exceed the context window of {self.context_window} tokens"
            )
