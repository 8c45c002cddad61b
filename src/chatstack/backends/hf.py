"""Baseline backend on HF transformers: one KV-cached decode loop per request.

Each request runs on its own thread; a lock lets one forward pass run at a time,
so concurrent requests interleave token by token. It is the reference the
native engine is measured against, not the fast path.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import torch
from transformers import AutoModelForCausalLM

from chatstack.backends.base import (
    MAX_LOGPROBS,
    FinishReason,
    GenerationBackend,
    GenerationOutput,
    GenerationRequest,
)
from chatstack.backends.copy_constraint import CopyTracker
from chatstack.backends.hf_logits import choose, logits_processors
from chatstack.backends.registry import RequestRegistry, RunningRequest
from chatstack.backends.sampling import TORCH_DTYPES, make_generator, token_logprobs



class HFBackend(GenerationBackend):
    def __init__(self, model_dir: str | Path, device: str = "cpu", dtype: str = "float32",
                 max_logprobs: int = MAX_LOGPROBS):
        if not 0 <= max_logprobs <= MAX_LOGPROBS:
            raise ValueError(f"max_logprobs must be in [0, {MAX_LOGPROBS}], got {max_logprobs}")
        self.max_logprobs = max_logprobs
        self.device = torch.device(device)
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=TORCH_DTYPES[dtype]).to(self.device)
        self.model.eval()
        self._context_window = int(self.model.config.max_position_embeddings)
        self._forward_lock = threading.Lock()
        self._requests = RequestRegistry()

    @property
    def context_window(self) -> int:
        return self._context_window

    def submit(self, request: GenerationRequest) -> None:
        self.validate(request)
        running = self._requests.add(request)
        threading.Thread(target=self._run, args=(running,), daemon=True, name=f"hf-{request.request_id}").start()

    def stream(self, request_id: str, coalesce: bool = False) -> Iterator[GenerationOutput]:
        return self._requests.stream(request_id, coalesce)

    def cancel(self, request_id: str) -> None:
        """Stop a running request; for a finished one nobody streamed, drop its outputs."""
        running = self._requests.still_running(request_id)
        if running is not None:
            running.cancelled.set()

    def active_requests(self) -> int:
        return self._requests.active()

    def _forward(self, input_ids: torch.Tensor, cache):
        with self._forward_lock, torch.inference_mode():
            out = self.model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=1)
        return out.logits[0, -1], out.cache  # (vocab,)

    def _run(self, running: RunningRequest) -> None:
        request = running.request
        params = request.sampling
        stop_ids = set() if params.ignore_eos else set(request.stop_token_ids)
        history = list(request.prompt_token_ids)  # prompt + output: what the penalties look at
        finish = FinishReason.LENGTH
        try:
            generator = make_generator(params, self.device)
            tracker = None if request.copy is None else CopyTracker(request.copy, request.stop_token_ids)
            processors = logits_processors(params, len(request.prompt_token_ids), tracker)
            input_ids = torch.tensor([history], device=self.device)  # (1, T)
            cache = None
            for _ in range(params.max_tokens):
                if running.cancelled.is_set():
                    finish = FinishReason.CANCELLED
                    break
                logits, cache = self._forward(input_ids, cache)
                seen = torch.tensor([history], device=self.device) if processors else input_ids
                token = choose(seen, logits, processors, params, generator)
                if token in stop_ids:
                    finish = FinishReason.STOP
                    break
                reports = () if params.logprobs is None else tuple(token_logprobs(logits[None], [token], [params.logprobs]))
                running.outputs.put(GenerationOutput(request.request_id, (token,), logprobs=reports))
                history.append(token)
                input_ids = torch.tensor([[token]], device=self.device)
        except Exception as exc:  # surfaced to the caller as an error output, never a hang
            finish = FinishReason.ERROR
            running.error = f"{type(exc).__name__}: {exc}"
        finally:
            self._requests.finish(running, GenerationOutput(request.request_id, (), finish, running.error))
