"""Per-request output queues shared by the backends: submit registers, the engine side
delivers outputs, `stream` drains them, `cancel` of an unread finished request drops it."""

from __future__ import annotations

import dataclasses
import queue
import threading
from dataclasses import dataclass, field
from typing import Iterator

from chatstack.backends.base import GenerationOutput, GenerationRequest


@dataclass
class RunningRequest:
    request: GenerationRequest
    outputs: "queue.Queue[GenerationOutput]" = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    done: bool = False  # the final output has been queued
    error: str | None = None


def merged_with_waiting(output: GenerationOutput, outputs: "queue.Queue[GenerationOutput]") -> GenerationOutput:
    """`output` and every output already queued after it, up to and including a final one, as one."""
    tokens, logprobs = list(output.new_token_ids), list(output.logprobs)
    while output.finish_reason is None:
        try:
            following = outputs.get_nowait()
        except queue.Empty:
            break
        tokens += following.new_token_ids
        logprobs += following.logprobs
        output = following
    return dataclasses.replace(output, new_token_ids=tuple(tokens), logprobs=tuple(logprobs))


class RequestRegistry:
    def __init__(self):
        self._running: dict[str, RunningRequest] = {}
        self.lock = threading.Lock()

    def add(self, request: GenerationRequest) -> RunningRequest:
        """Register a new request; an id that is still running is an error."""
        running = RunningRequest(request)
        with self.lock:
            previous = self._running.get(request.request_id)
            if previous is not None and not previous.done:
                raise ValueError(f"request_id {request.request_id!r} is already running")
            self._running[request.request_id] = running
        return running

    def get(self, request_id: str) -> RunningRequest | None:
        with self.lock:
            return self._running.get(request_id)

    def finish(self, running: RunningRequest, output: GenerationOutput) -> None:
        """Queue the final output."""
        with self.lock:
            running.done = True
        running.outputs.put(output)

    def stream(self, request_id: str, coalesce: bool = False) -> Iterator[GenerationOutput]:
        running = self.get(request_id)
        if running is None:
            raise KeyError(f"unknown request_id {request_id!r}")
        while True:
            output = running.outputs.get()
            if coalesce:
                output = merged_with_waiting(output, running.outputs)
            if output.finish_reason is not None:
                with self.lock:
                    if self._running.get(request_id) is running:
                        del self._running[request_id]
            yield output
            if output.finish_reason is not None:
                return

    def still_running(self, request_id: str) -> RunningRequest | None:
        """For cancel: the request if it is still running; a finished, unread one is dropped."""
        with self.lock:
            running = self._running.get(request_id)
            if running is not None and running.done:
                del self._running[request_id]
                return None
            return running

    def unfinished_ids(self) -> list[str]:
        with self.lock:
            return [request_id for request_id, r in self._running.items() if not r.done]

    def active(self) -> int:
        with self.lock:
            return sum(not r.done for r in self._running.values())
