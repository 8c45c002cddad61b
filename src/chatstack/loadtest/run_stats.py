"""Read one finished Locust run: the final stats (`--json-file`) and failures (`--csv`).

The JSON holds Locust's final counters (the CSV is rewritten once a second, so it can
miss the last second of a run). Percentiles are Locust's: response times are bucketed
to two significant digits above 100 ms, e.g. 196 ms is counted as 200 ms.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from chatstack.loadtest.measurement import TOTAL_NAME, TTFT_NAME


@dataclass(frozen=True)
class EntryStats:
    count: int
    failures: int
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float

    @classmethod
    def from_locust(cls, entry: dict, window_s: float) -> "EntryStats":
        """`window_s`: the run time the requests were started in (Locust --run-time)."""
        buckets = sorted((float(ms), n) for ms, n in entry["response_times"].items())
        count = entry["num_requests"]
        return cls(count=count, failures=entry["num_failures"], requests_per_s=count / window_s,
                   p50_ms=_percentile(buckets, 0.50), p90_ms=_percentile(buckets, 0.90),
                   p99_ms=_percentile(buckets, 0.99), mean_ms=entry["total_response_time"] / max(count, 1))


def _percentile(buckets: list[tuple[float, int]], q: float) -> float:
    """The smallest bucketed time with at least q of the samples at or below it (Locust's rule)."""
    total = sum(n for _, n in buckets)
    if total == 0:
        return float("nan")
    seen = 0
    for ms, n in buckets:
        seen += n
        if seen >= q * total:
            return ms
    return buckets[-1][0]


@dataclass(frozen=True)
class RunStats:
    total: EntryStats | None  # the `chat` entry: every request, failures included
    ttft: EntryStats | None  # the `chat TTFT` entry: successful requests only
    failures: dict[str, int]  # error text -> occurrences

    @property
    def error_rate(self) -> float:
        return self.total.failures / self.total.count if self.total and self.total.count else 0.0

    @classmethod
    def read(cls, prefix: Path, request_type: str, window_s: float) -> "RunStats":
        """From `<prefix>.json` and `<prefix>_failures.csv` as written by --json-file/--csv.

        With --stop-timeout, requests still running at the end finish and are counted, so
        `count / window_s` is the rate of requests started and completed in the run.
        """
        entries = {e["name"]: e for e in json.loads(Path(f"{prefix}.json").read_text())
                   if e["method"] == request_type}
        failures: dict[str, int] = {}
        failures_csv = Path(f"{prefix}_failures.csv")
        if failures_csv.exists():
            with failures_csv.open(newline="") as handle:
                for row in csv.DictReader(handle):
                    if row["Method"] == request_type:
                        failures[row["Error"]] = failures.get(row["Error"], 0) + int(row["Occurrences"])
        pick = {name: EntryStats.from_locust(entries[name], window_s) if name in entries else None for name in (TOTAL_NAME, TTFT_NAME)}
        return cls(pick[TOTAL_NAME], pick[TTFT_NAME], failures)
