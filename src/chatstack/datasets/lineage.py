"""Which dataset versions a training run used, recorded next to what it produced.

`resolve_dataset` is the one call a stage makes: with a pinned reference (or one with
`generate: false`) it reads that version (or the latest); otherwise it builds the records,
commits them (a no-op when unchanged) and returns them with the version, which the stage
then lists in `lineage.json`.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Mapping

from chatstack.datasets.kinds import DatasetKind
from chatstack.datasets.table import VersionedTable
from chatstack.datasets.version import DatasetRef, DatasetVersion

LINEAGE_FILE = "lineage.json"


def resolve_dataset(ref: DatasetRef, kind: DatasetKind, build: Callable[[], Iterable[Mapping]],
                    metadata: Mapping[str, object] | None = None) -> tuple[list[dict], DatasetVersion]:
    table = VersionedTable.from_ref(ref, kind)
    if ref.version is None and ref.generate:
        table.write(build(), metadata)
    entry = table.version(ref.version)
    return table.read(entry.version), entry


def read_latest(ref: DatasetRef, kind: DatasetKind) -> tuple[list[dict], DatasetVersion | None]:
    """The pinned or latest version's records; none (and no version) for a table not written yet."""
    table = VersionedTable.from_ref(ref, kind)
    if ref.version is None and table.latest() is None:
        return [], None
    entry = table.version(ref.version)
    return table.read(entry.version), entry


def write_lineage(folder: Path, stage: str, used: Mapping[str, DatasetVersion]) -> Path:
    """`folder/lineage.json`: the stage and, per role (e.g. "train", "feedback"), the version used."""
    record = {"stage": stage, "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "datasets": {role: dataclasses.asdict(v) for role, v in used.items()}}
    path = Path(folder) / LINEAGE_FILE
    path.write_text(json.dumps(record, indent=2))
    return path


def read_lineage(folder: Path) -> dict[str, DatasetVersion]:
    raw = json.loads((Path(folder) / LINEAGE_FILE).read_text())
    return {role: DatasetVersion(**v) for role, v in raw["datasets"].items()}
