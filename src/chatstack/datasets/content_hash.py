"""Content hash of a dataset version: SHA-256 over its records in order, canonical JSON.

The same records give the same hash whichever process wrote them and whatever files
Delta split them into, so a run can prove it trained on exactly the version it names.
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterable, Mapping


class ContentHasher:
    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self.rows = 0

    def update(self, records: Iterable[Mapping]) -> None:
        for record in records:
            line = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
            self._digest.update(line.encode("utf-8") + b"\n")
            self.rows += 1

    def hexdigest(self) -> str:
        return "sha256:" + self._digest.hexdigest()


def content_hash(records: Iterable[Mapping]) -> str:
    hasher = ContentHasher()
    hasher.update(records)
    return hasher.hexdigest()
