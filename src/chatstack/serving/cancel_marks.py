"""Cross-process cancellation marks between the `postprocess` and `generate` steps.

Triton 2.51's ensemble scheduler does not cancel a step that is already running
when the client goes away; it only marks the *next* step requests it creates as
cancelled. `generate` is long-running, so `postprocess` (the step after it,
created once per streamed delta) notices the cancelled request and leaves a mark
file named by the stream's key; `generate` checks for the mark between deltas
and stops the engine. Mark files live in a tmpfs folder when one exists.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_KEY = re.compile(r"[0-9a-f]{32}")


def default_marks_dir() -> Path:
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path("/tmp")
    return base / f"chatstack-cancel-{os.getuid()}"


class CancelMarks:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError(f"stream_key must be 32 lowercase hex digits, got {key!r}")
        return self.directory / key

    def mark(self, key: str) -> None:
        self._path(key).touch()

    def is_marked(self, key: str) -> bool:
        return self._path(key).exists()

    def clear(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
