"""Prometheus metrics of the `generate` step, exported on Triton's metrics port.

Each update is a message from the python-backend stub to the server, so updates from
worker threads are serialised with the model's stub lock (see delta_sender.py).
"""

from __future__ import annotations

import threading

from chatstack.backends.base import FinishReason

TTFT_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0]


class GenerateMetrics:
    def __init__(self, pb_utils, model_name: str, stub_lock: threading.Lock):
        self.lock = stub_lock
        labels = {"model": model_name}
        family = pb_utils.MetricFamily
        # the families must outlive their metrics, so they are kept on the object
        self.families = {
            "finished": family("chatstack_requests_finished_total", "Requests finished, by finish reason", family.COUNTER),
            "rejected": family("chatstack_requests_rejected_total", "Requests rejected as invalid", family.COUNTER),
            "tokens": family("chatstack_generated_tokens_total", "Tokens generated", family.COUNTER),
            "active": family("chatstack_active_requests", "Requests generating now", family.GAUGE),
            "ttft": family("chatstack_time_to_first_token_seconds", "Arrival to first text delta", family.HISTOGRAM),
            "ungrounded": family("chatstack_ungrounded_answers_total", "Answers with passages that failed the grounding check",
                                 family.COUNTER),
        }
        self._finished = {r: self.families["finished"].Metric({**labels, "reason": r.value}) for r in FinishReason}
        self._rejected = self.families["rejected"].Metric(labels)
        self._tokens = self.families["tokens"].Metric(labels)
        self._active = self.families["active"].Metric(labels)
        self._ttft = self.families["ttft"].Metric(labels, buckets=TTFT_BUCKETS)
        self._ungrounded = self.families["ungrounded"].Metric(labels)

    def finish(self, reason: FinishReason) -> None:
        with self.lock:
            self._finished[reason].increment(1)

    def rejected(self) -> None:
        with self.lock:
            self._rejected.increment(1)

    def tokens(self, count: int) -> None:
        if count:
            with self.lock:
                self._tokens.increment(count)

    def active(self, change: int) -> None:
        with self.lock:
            self._active.increment(change)

    def first_token(self, seconds: float) -> None:
        with self.lock:
            self._ttft.observe(seconds)

    def ungrounded(self) -> None:
        with self.lock:
            self._ungrounded.increment(1)
