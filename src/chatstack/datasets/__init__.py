"""Versioned datasets: every dataset a training stage writes is a Delta Lake table.

A version is a complete snapshot of one dataset (curated corpus, SFT conversations,
preference pairs) with its content hash in the commit; training runs read the latest or a
pinned version and record which versions they used (`lineage.json` in their output folder).
Tables live on a local path or any URI delta-rs understands (`s3://…` with storage options).
"""

from chatstack.datasets.kinds import DatasetKind
from chatstack.datasets.lineage import read_latest, read_lineage, resolve_dataset, write_lineage
from chatstack.datasets.table import VersionedTable
from chatstack.datasets.version import DatasetRef, DatasetVersion

__all__ = ["DatasetKind", "DatasetRef", "DatasetVersion", "VersionedTable", "read_latest", "read_lineage", "resolve_dataset",
           "write_lineage"]
