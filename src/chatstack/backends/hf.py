"""Baseline backend on HF transformers: one KV-cached decode loop per request.

Each request runs on its own thread; a lock lets one forward pass run at a time,
so concurrent requests interleave token by token. It is the reference the
native engine is measured against, not the fast path.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from transformers import AutoModelForCausalLM

from chatstack.backends.base import (
    FinishReason,
    GenerationBackend,
    GenerationOutput,
    GenerationRequest,
)
from chatstack.backends.sampling import make_generator, sample_next

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class _Running:
    request: GenerationRequest
    outputs: "queue.Queue[GenerationOutput]" = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    done: bool = False


class HFBackend(GenerationBackend):
    def __init__(self, model_dir: str | Path, device: str = "cpu", dtype: str = "float32"):
        self.device = torch.device(device)
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=_DTYPES[dtype]).to(self.device)
        self.model.eval()
        self._context_window = int(self.model.config.max_position_embeddings)
        self._forward_lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        self._registry_lock = threading.Lock()
        self._active = 0

    @property
    def context_window(self) -> int:
        return self._context_window

    def submit(self, request: GenerationRequest) -> None:
        self.validate(request)
        running = _Running(request)
        with self._registry_lock:
            previous = self._running.get(request.request_id)
            if previous is not None and not previous.done:
                raise ValueError(f"request_id {request.request_id!r} is already running")
            self._running[request.request_id] = running
        threading.Thread(target=self._run, args=(running,), daemon=True, name=f"hf-{request.request_id}").start()

    def stream(self, request_id: str) -> Iterator[GenerationOutput]:
        running = self._running.get(request_id)
        if running is None:
            raise KeyError(f"unknown request_id {request_id!r}")
        while True:
            output = running.outputs.get()
            if output.finish_reason is not None:
                with self._registry_lock:
                    self._running.pop(request_id, None)
            yield output
            if output.finish_reason is not None:
                return

    def cancel(self, request_id: str) -> None:
        """Stop a running request; for a finished one nobody streamed, drop its outputs."""
        with self._registry_lock:
            running = self._running.get(request_id)
            if running is not None and running.done:
                self._running.pop(request_id)
        if running is not None:
            running.cancelled.set()

    def active_requests(self) -> int:
        return self._active


    def _forward(self, input_ids: torch.Tensor, cache):
        with self._forward_lock, torch.inference_mode():
            out = self.model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=1)
        return out.logits[0, -1], out.cache  # (vocab,)

    def _run(self, running: _Running) -> None:
        request = running.request
        params = request.sampling
        stop_ids = set() if params.ignore_eos else set(request.stop_token_ids)
        generator = make_generator(params, self.device)
        finish = FinishReason.LENGTH
        with self._registry_lock:
            self._active += 1
        try:
            input_ids = torch.tensor([request.prompt_token_ids], device=self.device)  # (1, T)
            cache = None
            for _ in range(params.max_tokens):
                if running.cancelled.is_set():
                    finish = FinishReason.CANCELLED
                    break
                logits, cache = self._forward(input_ids, cache)
                token = sample_next(logits, params, generator)
                if token in stop_ids:
                    finish = FinishReason.STOP
                    break
                running.outputs.put(GenerationOutput(request.request_id, (token,)))
                input_ids = torch.tensor([[token]], device=self.device)
        except Exception as exc:  # surfaced to the caller as an error output, never a hang
            finish = FinishReason.ERROR
            running.error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._registry_lock:
                self._active -= 1
                running.done = True
            running.outputs.put(GenerationOutput(request.request_id, (), finish, running.error))
