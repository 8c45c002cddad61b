"""Moderation counters exported on Triton's metrics port (pb_utils.MetricFamily)."""

from __future__ import annotations

import threading

from chatstack.safety.audit import COUNTER_HELP, COUNTER_NAME, SafetyCounters


class TritonSafetyCounters(SafetyCounters):
    """`SafetyCounters` that also increments a Prometheus counter per (direction, category, action)."""

    def __init__(self, pb_utils, model_name: str, stub_lock: threading.Lock | None = None):
        super().__init__()
        # worker threads must serialise stub calls (docs/decisions/0004)
        self.lock = stub_lock or threading.Lock()
        # the family must outlive its metrics, so it is kept on the object
        self.family = pb_utils.MetricFamily(COUNTER_NAME, COUNTER_HELP, pb_utils.MetricFamily.COUNTER)
        self.model_name = model_name
        self._metrics: dict[tuple[str, str, str], object] = {}

    def increment(self, direction: str, category: str, action: str) -> None:
        super().increment(direction, category, action)
        key = (direction, category, action)
        with self.lock:
            if key not in self._metrics:
                labels = {"model": self.model_name, "direction": direction, "category": category, "action": action}
                self._metrics[key] = self.family.Metric(labels)
            self._metrics[key].increment(1)
