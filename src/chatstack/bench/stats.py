"""Percentiles of latency samples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Summary:
    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> "Summary":
        ms = np.asarray(seconds) * 1000
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(len(ms), float(p50), float(p90), float(p99), float(ms.mean()))

    def row(self, name: str) -> str:
        return f"| {name} | {self.count} | {self.p50_ms:.1f} | {self.p90_ms:.1f} | {self.p99_ms:.1f} | {self.mean_ms:.1f} |"


TABLE_HEADER = "| path | n | p50 ms | p90 ms | p99 ms | mean ms |\n|---|---|---|---|---|---|"
