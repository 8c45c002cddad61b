"""A Delta Lake table holding every version of one dataset.

Each write is a full snapshot (`overwrite`), so version N is exactly the dataset a stage
produced at that time, and time travel (`DeltaTable(uri, version=N)`) reads it back.
Writing the same content as the latest version adds no version. Records are spooled to
an Arrow IPC file while the hash is computed, then streamed into Delta with the hash in
the commit, so a corpus larger than memory is written without holding it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable, Mapping

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake

from chatstack.datasets.content_hash import ContentHasher, content_hash
from chatstack.datasets.kinds import ROW, DatasetKind, record_batches
from chatstack.datasets.version import META_PREFIX, DatasetRef, DatasetVersion


def _is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


class VersionedTable:
    def __init__(self, uri: str | Path, kind: DatasetKind, storage_options: Mapping[str, str] | None = None):
        uri = str(uri)
        self.uri = str(Path(uri).resolve()) if "://" not in uri else uri
        self.kind = kind
        self.storage_options = dict(storage_options or {})

    @classmethod
    def from_ref(cls, ref: DatasetRef, kind: DatasetKind) -> "VersionedTable":
        return cls(ref.uri, kind, ref.storage_options)

    def exists(self) -> bool:
        return DeltaTable.is_deltatable(self.uri, storage_options=self.storage_options or None)

    def history(self) -> list[DatasetVersion]:
        """Every version chatstack wrote, oldest first."""
        return dataset_history(self.uri, self.storage_options)

    def latest(self) -> DatasetVersion | None:
        history = self.history()
        return history[-1] if history else None

    def version(self, number: int | None = None) -> DatasetVersion:
        """The latest version, or version `number`; ValueError when there is none."""
        history = self.history()
        if not history:
            raise ValueError(f"dataset {self.uri} has no versions yet")
        if number is None:
            return history[-1]
        for entry in history:
            if entry.version == number:
                return entry
        raise ValueError(f"dataset {self.uri} has no version {number}; versions: {[v.version for v in history]}")

    def write(self, records: Iterable[Mapping], metadata: Mapping[str, object] | None = None) -> DatasetVersion:
        """Commit `records` as the next version (or return the latest if its content is the same)."""
        latest = self._checked_latest()
        hasher = ContentHasher()
        with tempfile.TemporaryDirectory(prefix="chatstack-dataset-") as spool_dir:
            spool = Path(spool_dir) / "rows.arrows"
            with pa.OSFile(str(spool), "wb") as sink, pa.ipc.new_stream(sink, self.kind.schema) as writer:
                for batch in record_batches(records, self.kind):
                    hasher.update(_without_row(batch.to_pylist()))
                    writer.write_batch(batch)
            if latest is not None and latest.content_hash == hasher.hexdigest():
                return latest
            pending = DatasetVersion(self.uri, -1, self.kind.value, hasher.hexdigest(), hasher.rows, "",
                                     {k: str(v) for k, v in (metadata or {}).items()})
            if _is_local(self.uri):
                Path(self.uri.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
            with pa.memory_map(str(spool)) as source:
                # schema_mode: a version may carry a field its kind gained since the table's last version
                write_deltalake(self.uri, pa.ipc.open_stream(source), mode="overwrite", schema_mode="overwrite",
                                storage_options=self.storage_options or None,
                                commit_properties=CommitProperties(custom_metadata=pending.commit_metadata()))
        return self._version_with_hash(pending.content_hash)

    def read(self, number: int | None = None, verify: bool = True) -> list[dict]:
        """The records of the latest version or of version `number`, in the order written.

        `verify` recomputes the content hash and raises ValueError if the data differs from
        what the commit recorded (files edited or lost under the table).
        """
        entry = self.version(number)
        table = DeltaTable(self.uri, version=entry.version, storage_options=self.storage_options or None)
        records = _without_row(table.to_pyarrow_table().sort_by(ROW).to_pylist())
        if verify and content_hash(records) != entry.content_hash:
            raise ValueError(f"dataset {self.uri} version {entry.version}: content hash mismatch "
                             f"(recorded {entry.content_hash}, found {content_hash(records)})")
        return records

    def _checked_latest(self) -> DatasetVersion | None:
        latest = self.latest()
        if latest is not None and latest.kind != self.kind.value:
            raise ValueError(f"dataset {self.uri} holds {latest.kind} records, not {self.kind.value}")
        if latest is None and self.exists():
            raise ValueError(f"{self.uri} is a Delta table that chatstack did not write; choose another uri")
        return latest

    def _version_with_hash(self, digest: str) -> DatasetVersion:
        # the newest version with this content: ours, unless a concurrent writer committed the same data
        return next(v for v in reversed(self.history()) if v.content_hash == digest)


def dataset_history(uri: str, storage_options: Mapping[str, str] | None = None) -> list[DatasetVersion]:
    """Every version chatstack wrote to the table at `uri`, oldest first (none if no table)."""
    options = dict(storage_options or {}) or None
    if not DeltaTable.is_deltatable(uri, storage_options=options):
        return []
    commits = DeltaTable(uri, storage_options=options).history()
    versions = [DatasetVersion.from_commit(uri, c) for c in commits if META_PREFIX + "content_hash" in c]
    return sorted(versions, key=lambda v: v.version)


def _without_row(rows: list[dict]) -> list[dict]:
    for row in rows:
        row.pop(ROW, None)
    return rows
