"""The native engine behind the `GenerationBackend` interface.

One loop thread owns the engine. `submit` and `cancel` only post commands to its
inbox, so the engine itself is never touched concurrently; each request's outputs
arrive on its own queue, read by `stream`.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from chatstack.backends.base import FinishReason, GenerationBackend, GenerationOutput, GenerationRequest
from chatstack.backends.registry import RequestRegistry
from chatstack.backends.sampling import TORCH_DTYPES
from chatstack.engine.config import EngineConfig
from chatstack.engine.llm_engine import LLMEngine, StepOutput

_IDLE_WAIT_S = 0.5


@dataclass(frozen=True)
class _Cancel:
    request_id: str


class NativeBackend(GenerationBackend):
    def __init__(self, model_dir: str | Path, device: str = "cpu", dtype: str = "float32",
                 engine_config: EngineConfig = EngineConfig()):
        if dtype not in TORCH_DTYPES:
            raise ValueError(f"dtype must be one of {sorted(TORCH_DTYPES)}, got {dtype!r}")
        self.engine = LLMEngine(model_dir, engine_config, device, TORCH_DTYPES[dtype])
        self._requests = RequestRegistry()
        self._inbox: "queue.Queue[GenerationRequest | _Cancel | None]" = queue.Queue()
        self._stopped = threading.Event()
        self._loop = threading.Thread(target=self._serve, daemon=True, name="native-engine")
        self._loop.start()

    @property
    def context_window(self) -> int:
        return self.engine.context_window

    @property
    def max_logprobs(self) -> int:
        return self.engine.config.max_logprobs

    def validate(self, request: GenerationRequest) -> None:
        super().validate(request)
        self.engine.validate(request)

    def submit(self, request: GenerationRequest) -> None:
        if self._stopped.is_set():
            raise RuntimeError("the native backend is shut down")
        self.validate(request)
        self._requests.add(request)
        self._inbox.put(request)

    def stream(self, request_id: str, coalesce: bool = False) -> Iterator[GenerationOutput]:
        return self._requests.stream(request_id, coalesce)

    def cancel(self, request_id: str) -> None:
        """Stop a running request; for a finished one nobody streamed, drop its outputs."""
        if self._requests.still_running(request_id) is not None:
            self._inbox.put(_Cancel(request_id))

    def active_requests(self) -> int:
        return self._requests.active()

    def shutdown(self) -> None:
        self._stopped.set()
        self._inbox.put(None)
        self._loop.join(timeout=30)

    # -- loop thread ----------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stopped.is_set():
            self._drain_inbox(block=not self.engine.has_unfinished())
            if self.engine.has_unfinished():
                for result in self._step():
                    self._deliver(result)
        for request_id in list(self.engine.sequences):
            self.engine.abort(request_id)
        for request_id in self._requests.unfinished_ids():
            self._deliver(StepOutput(request_id, (), FinishReason.CANCELLED))

    def _step(self) -> list[StepOutput]:
        """One engine step; an engine fault ends every request in it with an error, never a hang."""
        try:
            return self.engine.step()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            failed = [r for r in list(self.engine.sequences) if self.engine.abort(r, FinishReason.ERROR)]
            return [StepOutput(request_id, (), FinishReason.ERROR, error) for request_id in failed]

    def _drain_inbox(self, block: bool) -> None:
        try:
            command = self._inbox.get(timeout=_IDLE_WAIT_S) if block else self._inbox.get_nowait()
            while True:
                self._apply(command)
                command = self._inbox.get_nowait()
        except queue.Empty:
            return

    def _apply(self, command: GenerationRequest | _Cancel | None) -> None:
        if command is None:
            return
        if isinstance(command, _Cancel):
            if self.engine.abort(command.request_id):
                self._deliver(StepOutput(command.request_id, (), FinishReason.CANCELLED))
            return
        try:
            self.engine.add_request(command)
        except Exception as exc:  # validated at submit; anything left still ends the stream
            self._deliver(StepOutput(command.request_id, (), FinishReason.ERROR, f"{type(exc).__name__}: {exc}"))

    def _deliver(self, result: StepOutput) -> None:
        running = self._requests.get(result.request_id)
        if running is None:
            return
        reports = result.logprobs or (None,) * len(result.new_token_ids)
        for token, report in zip(result.new_token_ids, reports):  # one output per token, like the HF backend
            running.outputs.put(GenerationOutput(result.request_id, (token,), logprobs=() if report is None else (report,)))
        if result.finish_reason is not None:
            self._requests.finish(running, GenerationOutput(result.request_id, (), result.finish_reason, result.error))
