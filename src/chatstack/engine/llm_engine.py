"""The step loop: admit requests, schedule, run the model, report new tokens and finishes.

Single-threaded by design; `backends/native.py` drives it from one loop thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch

from chatstack.backends.base import FinishReason, GenerationRequest, TokenLogprob
from chatstack.backends.copy_constraint import CopyTracker
from chatstack.backends.sampling import make_generator
from chatstack.engine.config import EngineConfig
from chatstack.engine.model_runner import ModelRunner
from chatstack.engine.scheduler import Scheduler
from chatstack.engine.sequence import Sequence


class StepOutput(NamedTuple):  # a tuple: one per running request per step
    """What one request got from one step: new tokens, and a finish reason on its last output."""

    request_id: str
    new_token_ids: tuple[int, ...]
    finish_reason: FinishReason | None = None
    error: str | None = None
    logprobs: tuple[TokenLogprob, ...] = ()  # one per new token, when the request asked for them


class LLMEngine:
    def __init__(self, model_dir: str | Path, config: EngineConfig = EngineConfig(), device: str = "cpu",
                 dtype: torch.dtype = torch.float32):
        self.config = config
        self.runner = ModelRunner(model_dir, config, device, dtype)
        self.scheduler = Scheduler(config)
        self.sequences: dict[str, Sequence] = {}

    @property
    def context_window(self) -> int:
        return self.runner.spec.max_position_embeddings

    def validate(self, request: GenerationRequest) -> None:
        """Reject what could never run, naming the offending field."""
        vocab = self.runner.spec.vocab_size
        total = len(request.prompt_token_ids) + request.sampling.max_tokens
        if not request.prompt_token_ids:
            raise ValueError("prompt_token_ids must not be empty")
        if total > self.context_window:
            raise ValueError(f"max_tokens {request.sampling.max_tokens} cannot fit: prompt + max_tokens = {total} "
                             f"tokens exceed the context window of {self.context_window} tokens")
        if total > self.config.kv_capacity_tokens:
            raise ValueError(
                f"max_tokens {request.sampling.max_tokens} cannot fit: prompt + max_tokens = {total} tokens "
                f"exceed the KV cache of {self.config.kv_capacity_tokens} tokens")
        if any(not 0 <= t < vocab for t in request.prompt_token_ids):
            raise ValueError(f"prompt_token_ids must be in [0, {vocab}), the model's vocabulary")
        if request.sampling.logprobs is not None and request.sampling.logprobs > self.config.max_logprobs:
            raise ValueError(f"logprobs must be at most {self.config.max_logprobs} (the engine's max_logprobs), "
                             f"got {request.sampling.logprobs}")
        if any(not 0 <= t < vocab for t in request.stop_token_ids):
            raise ValueError(f"stop_token_ids must be in [0, {vocab}), got {list(request.stop_token_ids)}")
        if request.copy is not None and any(not 0 <= t < vocab for s in request.copy.sources
                                            for t in (*s.token_ids, *s.citation)):
            raise ValueError(f"copy sources must hold token ids in [0, {vocab}), the model's vocabulary")

    def add_request(self, request: GenerationRequest, priority: int = 0) -> None:
        """Queue a request; a lower `priority` is scheduled (and kept from preemption) first."""
        self.validate(request)
        if request.request_id in self.sequences:
            raise ValueError(f"request_id {request.request_id!r} is already running")
        seq = Sequence(request.request_id, list(request.prompt_token_ids), request.sampling,
                       frozenset(request.stop_token_ids), priority=priority,
                       generator=make_generator(request.sampling, self.runner.device),
                       copy=None if request.copy is None else CopyTracker(request.copy, request.stop_token_ids))
        self.sequences[seq.seq_id] = seq
        self.scheduler.add(seq)

    def abort(self, request_id: str, reason: FinishReason = FinishReason.CANCELLED) -> bool:
        """End a request now and free its blocks; False if it is not in the engine."""
        seq = self.sequences.pop(request_id, None)
        if seq is None:
            return False
        self.scheduler.finish(seq, reason)
        return True

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished()

    def step(self) -> list[StepOutput]:
        output = self.scheduler.schedule(self.runner.lone_decode_steps())
        if output.is_empty:
            return []
        try:
            sampled, logprobs = self.runner.run(output)
        except Exception as exc:  # fail this step's requests; everyone waiting keeps going
            error = f"{type(exc).__name__}: {exc}"
            failed = [c.seq.seq_id for c in output.chunks if self.abort(c.seq.seq_id, FinishReason.ERROR)]
            return [StepOutput(seq_id, (), FinishReason.ERROR, error) for seq_id in failed]
        results = []
        ends = {chunk.seq.seq_id: chunk.start + chunk.num_tokens for chunk in output.chunks}
        for seq in self.scheduler.complete(output, sampled):
            new = tuple(seq.token_ids[ends[seq.seq_id]:])  # this step's tokens (none for a stop token)
            report = logprobs.get(seq.seq_id) if new else None
            results.append(StepOutput(seq.seq_id, new, seq.finish_reason, logprobs=() if report is None else (report,)))
            if seq.is_finished:
                del self.sequences[seq.seq_id]
        return results

    def generate(self, requests: list[GenerationRequest]) -> dict[str, list[int]]:
        """Run requests to completion (offline batch); returns generated token ids per request."""
        for request in requests:
            self.add_request(request)
        tokens: dict[str, list[int]] = {r.request_id: [] for r in requests}
        while self.has_unfinished():
            for result in self.step():
                tokens[result.request_id].extend(result.new_token_ids)
        return tokens
