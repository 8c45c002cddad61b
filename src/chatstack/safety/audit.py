"""Audit trail and counters for moderation decisions; never stores the text itself.

Every non-allow decision becomes one JSON line (category, score, action,
request id, a salted SHA-256 of the text) on the `chatstack.safety.audit`
logger and, when configured, in an append-only file. `SafetyCounters` counts
decisions per (direction, category, action) in a shape that maps one-to-one
onto a Prometheus counter family (`pb_utils.MetricFamily`, kind COUNTER).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("chatstack.safety.audit")
COUNTER_NAME = "chatstack_moderation_decisions_total"
COUNTER_HELP = "Moderation decisions by direction (input/output), category and action"


@dataclass(frozen=True)
class AuditRecord:
    time: float
    request_id: str
    direction: str  # "input" or "output"
    category: str
    score: float
    action: str
    text_sha256: str


def text_digest(text: str, salt: str = "") -> str:
    return hashlib.sha256((salt + text).encode("utf-8", "surrogatepass")).hexdigest()


class AuditLog:
    def __init__(self, path: Path | None = None, salt: str = ""):
        self.path = Path(path) if path is not None else None
        self.salt = salt
        self._lock = threading.Lock()

    def record(self, request_id: str, direction: str, category: str, score: float, action: str, text: str) -> AuditRecord:
        entry = AuditRecord(time.time(), request_id, direction, category, round(score, 4), action,
                            text_digest(text, self.salt))
        line = json.dumps(asdict(entry), sort_keys=True)
        log.warning("moderation %s", line)
        if self.path is not None:
            with self._lock, self.path.open("a", encoding="utf-8") as sink:
                sink.write(line + "\n")
        return entry


@dataclass(frozen=True)
class CounterSample:
    labels: dict[str, str]
    value: int


class SafetyCounters:
    """Thread-safe monotonic counters keyed by (direction, category, action)."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Lock()

    def increment(self, direction: str, category: str, action: str) -> None:
        key = (direction, category, action)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def samples(self) -> list[CounterSample]:
        with self._lock:
            items = sorted(self._counts.items())
        return [CounterSample({"direction": d, "category": c, "action": a}, n) for (d, c, a), n in items]
