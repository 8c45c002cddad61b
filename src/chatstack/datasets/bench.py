"""What versioning costs: a plain JSONL write vs committing a Delta version vs a verified read.

    chatstack datasets bench artifacts/curated/corpus.jsonl
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Callable

from chatstack.datasets.kinds import DatasetKind
from chatstack.datasets.table import VersionedTable


def _best_of(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def run(corpus_jsonl: Path, repeats: int = 3) -> dict:
    records = [json.loads(line) for line in corpus_jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
    with tempfile.TemporaryDirectory(prefix="chatstack-bench-") as tmp:
        def write_jsonl() -> None:
            with open(Path(tmp) / "corpus.jsonl", "w", encoding="utf-8") as out:
                out.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)

        fresh = iter(range(repeats))
        commit = lambda: VersionedTable(Path(tmp) / f"t{next(fresh)}", DatasetKind.CORPUS).write(records)  # noqa: E731
        table = VersionedTable(Path(tmp) / "read", DatasetKind.CORPUS)
        table.write(records)
        figures = {"documents": len(records), "jsonl_write_s": _best_of(write_jsonl, repeats),
                   "delta_commit_s": _best_of(commit, repeats), "verified_read_s": _best_of(table.read, repeats)}
    figures["commit_vs_jsonl"] = figures["delta_commit_s"] / figures["jsonl_write_s"]
    figures["read_vs_jsonl"] = figures["verified_read_s"] / figures["jsonl_write_s"]
    return figures


def main(corpus_jsonl: Path) -> None:
    f = run(corpus_jsonl)
    print(f"{f['documents']} documents (best of 3): JSONL write {f['jsonl_write_s'] * 1000:.0f} ms | "
          f"Delta version commit (spool, hash, write) {f['delta_commit_s'] * 1000:.0f} ms "
          f"({f['commit_vs_jsonl']:.1f}x) | read + hash check {f['verified_read_s'] * 1000:.0f} ms "
          f"({f['read_vs_jsonl']:.1f}x)")
