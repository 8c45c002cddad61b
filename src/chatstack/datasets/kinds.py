"""The kinds of dataset chatstack versions, each with its Arrow schema and record checks.

Records are plain dicts in the formats the stages already use (TRL conversational format
for SFT and DPO); a record with a missing, unknown or mistyped field is rejected naming it.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Iterable, Iterator, Mapping

import pyarrow as pa

ROW = "_row"  # position of a record in its version: Delta files carry no order of their own
BATCH_ROWS = 1024

_MESSAGES = pa.list_(pa.struct([pa.field("role", pa.string(), nullable=False),
                                pa.field("content", pa.string(), nullable=False)]))


class DatasetKind(Enum):
    CORPUS = "corpus"  # curated pretraining documents
    CONVERSATIONS = "conversations"  # SFT chats
    PREFERENCES = "preferences"  # DPO pairs (synthesised or exported from user feedback)

    @property
    def fields(self) -> tuple[pa.Field, ...]:
        return _FIELDS[self]

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(ROW, pa.int64(), nullable=False), *self.fields])

    def check(self, record: Any, row: int) -> None:
        """ValueError naming the row and field of a record that does not fit this kind."""
        if not isinstance(record, Mapping):
            raise ValueError(f"{self.value} row {row}: a record must be a mapping, got {type(record).__name__}")
        names = {f.name for f in self.fields}
        unknown = sorted(set(record) - names)
        if unknown:
            raise ValueError(f"{self.value} row {row}: unknown field(s) {unknown}; allowed: {sorted(names)}")
        for f in self.fields:
            value = record.get(f.name)
            if value is None:
                if not f.nullable:
                    raise ValueError(f"{self.value} row {row}: field {f.name!r} is required")
            elif f.type == _MESSAGES:
                _check_messages(value, f"{self.value} row {row}: field {f.name!r}")
            elif not isinstance(value, str):
                raise ValueError(f"{self.value} row {row}: field {f.name!r} must be a string, "
                                 f"got {type(value).__name__}")


def _check_messages(value: Any, where: str) -> None:
    if not isinstance(value, list):
        raise ValueError(f"{where} must be a list of {{role, content}} messages, got {type(value).__name__}")
    for message in value:
        if not (isinstance(message, Mapping) and set(message) == {"role", "content"}
                and isinstance(message["role"], str) and isinstance(message["content"], str)):
            raise ValueError(f"{where}: every message must be {{role: str, content: str}}, got {message!r}")


_FIELDS = {
    DatasetKind.CORPUS: (pa.field("id", pa.string(), nullable=False), pa.field("text", pa.string(), nullable=False)),
    DatasetKind.CONVERSATIONS: (pa.field("split", pa.string(), nullable=False),
                                pa.field("messages", _MESSAGES, nullable=False)),
    DatasetKind.PREFERENCES: (pa.field("split", pa.string(), nullable=False),
                              pa.field("prompt", _MESSAGES, nullable=False),
                              pa.field("chosen", _MESSAGES, nullable=False),
                              pa.field("rejected", _MESSAGES, nullable=False),
                              pa.field("objective", pa.string()), pa.field("source", pa.string()),
                              # what a pair tests ("drift", "not_refused", ...) and the section it asks about,
                              # where its construction names them: held-out accuracy is reported per kind
                              pa.field("kind", pa.string()), pa.field("section", pa.string())),
}


def record_batches(records: Iterable[Mapping], kind: DatasetKind) -> Iterator[pa.RecordBatch]:
    """Checked records as Arrow batches of at most BATCH_ROWS rows, numbered from 0."""
    pending: list[dict] = []
    row = 0
    for record in records:
        kind.check(record, row)
        pending.append({ROW: row, **{f.name: record.get(f.name) for f in kind.fields}})
        row += 1
        if len(pending) == BATCH_ROWS:
            yield pa.RecordBatch.from_pylist(pending, schema=kind.schema)
            pending = []
    if pending:
        yield pa.RecordBatch.from_pylist(pending, schema=kind.schema)
