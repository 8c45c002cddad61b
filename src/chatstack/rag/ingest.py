"""Ingest: files → documents → chunks → vectors → the store, idempotently.

Re-ingesting a folder embeds only chunks whose id is new, deletes chunks whose content
changed or whose file is gone, and leaves unchanged chunks alone, so the collection
never holds duplicates. Files that cannot be ingested are skipped with a reason. With a
`SentenceVectors` file, every chunk's sentences that it does not hold yet are embedded into it
(for the grounding check; `sentence_vectors.py`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from chatstack.rag.chunking import Chunk, ChunkingParams, TokenOffsets, chunk_document
from chatstack.rag.documents import MAX_FILE_BYTES, SkippedFile, read_document
from chatstack.rag.grounding import split_sentences
from chatstack.rag.sentence_vectors import SentenceVectors
from chatstack.rag.store import VectorStore

log = logging.getLogger(__name__)


class Embedder(Protocol):
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class SourceFile:
    path: Path
    source: str  # path relative to the ingested root's parent, e.g. "docs/rag.md"


@dataclass(frozen=True)
class IngestRoot:
    key: str  # the resolved root path: chunks remember it, so deletions stay inside it
    files: tuple[SourceFile, ...]


@dataclass
class IngestReport:
    files: int = 0
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    sentences_embedded: int = 0  # into the sentence-vector file, when there is one
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    removed_sources: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.files} file(s) ingested: {self.added} chunk(s) added, {self.removed} removed, "
                f"{self.unchanged} unchanged; {self.sentences_embedded} sentence(s) embedded for the grounding check; "
                f"{len(self.skipped)} file(s) skipped; "
                f"{len(self.removed_sources)} deleted file(s) removed")


def discover(path: Path, exclude: tuple[Path, ...] = ()) -> IngestRoot:
    """The files under `path` (or `path` itself), hidden files and folders and the files of
    `exclude` left out (an excluded file ingested before has its chunks removed by `ingest`)."""
    path = Path(path)
    excluded = {Path(p).resolve() for p in exclude}
    if path.is_file():
        files = [] if path.resolve() in excluded else [SourceFile(path, path.name)]
    else:
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.resolve() not in excluded)
        files = [SourceFile(p, p.relative_to(path.parent).as_posix()) for p in found
                 if not any(part.startswith(".") for part in p.relative_to(path).parts)]
    return IngestRoot(str(path.resolve()), tuple(files))


@dataclass
class Ingestor:
    store: VectorStore
    embedder: Embedder
    offsets: TokenOffsets
    params: ChunkingParams = field(default_factory=ChunkingParams)
    tenant: str = "default"
    max_file_bytes: int = MAX_FILE_BYTES
    sentences: SentenceVectors | None = None

    def __post_init__(self) -> None:
        if not self.tenant or len(self.tenant) > 128:
            raise ValueError(f"tenant must be 1 to 128 characters, got {self.tenant!r}")

    def ingest(self, roots: list[IngestRoot], progress: Callable[[str], None] | None = None) -> IngestReport:
        if not self.store.exists():
            self.store.create(self.embedder.dim)
        report = IngestReport()
        for root in roots:
            stored: dict[str, set[str]] = defaultdict(set)
            for ref in self.store.refs(self.tenant, root.key):
                stored[ref.source].add(ref.chunk_id)
            seen: set[str] = set()
            for file in root.files:
                if progress is not None:
                    progress(file.source)
                chunks = self._chunks(file, report)
                if chunks is None:
                    continue
                seen.add(file.source)
                self._sync_file(chunks, stored.get(file.source, set()), root.key, report)
            for source in sorted(set(stored) - seen):
                self.store.delete(stored[source])
                report.removed += len(stored[source])
                report.removed_sources.append(source)
        self.store.flush()
        self.store.ensure_index()
        return report

    def _chunks(self, file: SourceFile, report: IngestReport) -> list[Chunk] | None:
        try:
            document = read_document(file.path, file.source, self.max_file_bytes)
        except (SkippedFile, OSError) as exc:
            log.warning("skipped %s: %s", file.path, exc)
            report.skipped.append((str(file.path), str(exc)))
            return None
        report.files += 1
        return chunk_document(document, self.offsets, self.params, self.tenant)

    def _sync_file(self, chunks: list[Chunk], stored_ids: set[str], root_key: str, report: IngestReport) -> None:
        new = [c for c in chunks if c.chunk_id not in stored_ids]
        if new:
            self.store.insert(new, self.embedder.embed([c.embedding_text for c in new]), root_key)
        stale = stored_ids - {c.chunk_id for c in chunks}
        self.store.delete(stale)
        report.added += len(new)
        report.removed += len(stale)
        report.unchanged += len(chunks) - len(new)
        if self.sentences is not None:  # all chunks, so a file made after the index fills in too
            missing = self.sentences.missing([s for c in chunks for s in split_sentences(c.text)])
            if missing:
                self.sentences.add(missing, self.embedder.embed(missing))
            report.sentences_embedded += len(missing)
