"""Helpers for the GenerationBackend contract tests that every backend must pass."""

from __future__ import annotations

import threading

from chatstack.backends.base import GenerationBackend, GenerationOutput, GenerationRequest, SamplingParams


def run(backend: GenerationBackend, request_id: str, prompt, sampling: SamplingParams,
        stop_token_ids=()) -> tuple[list[int], GenerationOutput]:
    """Submit one request and stream it to the end: (generated token ids, final output)."""
    backend.submit(GenerationRequest(request_id, tuple(prompt), sampling, tuple(stop_token_ids)))
    outputs = list(backend.stream(request_id))
    return [t for o in outputs for t in o.new_token_ids], outputs[-1]


def run_concurrently(backend: GenerationBackend, jobs: dict[str, tuple[int, ...]],
                     sampling: SamplingParams) -> dict[str, tuple[list[int], GenerationOutput]]:
    """Submit and stream every job from its own thread at once."""
    results: dict[str, tuple[list[int], GenerationOutput]] = {}

    def consume(request_id: str) -> None:
        results[request_id] = run(backend, request_id, jobs[request_id], sampling)

    consumers = [threading.Thread(target=consume, args=(r,)) for r in jobs]
    for consumer in consumers:
        consumer.start()
    for consumer in consumers:
        consumer.join(timeout=60)
    return results
