"""Sentence vectors of the indexed passages, embedded once at ingest for the grounding check.

The grounding check compares every answer sentence with every sentence of the retrieved
passages. Embedding those passage sentences per answer cost 0.25–0.76 s of one core for a
topic not seen recently (about 30 sentences); ingest now embeds each chunk's sentences once
(`grounding.split_sentences`, the same split the check uses) and keeps them here, so at
answer time only the answer's own sentences are embedded.

A SQLite file keyed by the SHA-256 of the sentence text: written by ingest, read by any
number of serving processes. Entries are never wrong, only possibly unused (a sentence of a
chunk that was later removed), so re-ingesting only adds.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def _key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class SentenceVectors:
    def __init__(self, path: Path, dim: int | None = None, read_only: bool = False):
        """Open (or, unless `read_only`, create) the file; `dim` is checked against the stored one."""
        self.path = Path(path)
        if read_only and not self.path.is_file():
            raise FileNotFoundError(f"no sentence vectors at {self.path} (run chatstack ingest)")
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        uri = f"file:{self.path}?mode=ro" if read_only else f"file:{self.path}"
        # a reader waits at most 0.1 s for an ingest's write lock, then embeds instead
        self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=0.1 if read_only else 30.0)
        self._lock = threading.Lock()
        if not read_only:
            with self._db:
                self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
                self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB)")
        stored = self._db.execute("SELECT value FROM meta WHERE key = 'dim'").fetchone()
        if stored is None and dim is not None and not read_only:
            with self._db:
                self._db.execute("INSERT INTO meta VALUES ('dim', ?)", (str(dim),))
        self.dim = int(stored[0]) if stored else dim
        if dim is not None and self.dim != dim:
            raise ValueError(f"{self.path} holds {self.dim}-dimensional vectors, the embedder makes {dim}")

    def lookup(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The stored vector of each of `texts` that has one. A file that cannot be read just now
        (an ingest holding its write lock) answers with what it read so far: the caller embeds the rest."""
        keys = {_key(t): t for t in dict.fromkeys(texts)}
        ordered, found = list(keys), {}
        with self._lock:
            try:
                for start in range(0, len(ordered), 500):  # SQLite's bound-parameter limit
                    batch = ordered[start:start + 500]
                    rows = self._db.execute(
                        f"SELECT key, vector FROM vectors WHERE key IN ({','.join('?' * len(batch))})", batch).fetchall()
                    found.update((keys[k], np.frombuffer(v, dtype=np.float32)) for k, v in rows)
            except sqlite3.OperationalError as exc:
                log.warning("sentence vectors %s unreadable (%s): embedding instead", self.path, exc)
        return found

    def missing(self, texts: list[str]) -> list[str]:
        """`texts` (each once, in order) that have no stored vector."""
        known = self.lookup(texts)
        return [t for t in dict.fromkeys(texts) if t not in known]

    def add(self, texts: list[str], vectors: np.ndarray) -> None:
        if len(texts) != len(vectors):
            raise ValueError(f"{len(texts)} texts but {len(vectors)} vectors")
        if len(texts) and vectors.shape[1] != self.dim:
            raise ValueError(f"vectors have {vectors.shape[1]} dimensions, the file holds {self.dim}")
        rows = [(_key(t), np.ascontiguousarray(v, dtype=np.float32).tobytes()) for t, v in zip(texts, vectors)]
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", rows)

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]

    def close(self) -> None:
        self._db.close()
