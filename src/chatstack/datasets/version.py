"""What names a dataset version: a reference in a recipe, and a version as committed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

META_PREFIX = "chatstack."  # commit metadata keys chatstack writes


@dataclass(frozen=True)
class DatasetRef:
    """A table to read or write, optionally pinned to one version (`None`: the latest).

    In a recipe: `dataset: {uri: artifacts/datasets/sft, version: 3}` (version optional);
    `generate: false` makes the stage train on what the table holds (a set committed with
    `chatstack datasets commit`) instead of generating its set and committing it;
    `storage_options` go to delta-rs unchanged (e.g. AWS_REGION for `s3://` URIs).
    """

    uri: str
    version: int | None = None
    generate: bool = True
    storage_options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.uri, str) or not self.uri.strip():
            raise ValueError(f"dataset uri must be a non-empty string, got {self.uri!r}")
        if self.version is not None and (isinstance(self.version, bool) or not isinstance(self.version, int)
                                         or self.version < 0):
            raise ValueError(f"dataset version must be an integer >= 0 or null, got {self.version!r}")
        if not isinstance(self.generate, bool):
            raise ValueError(f"dataset generate must be true or false, got {self.generate!r}")
        if not isinstance(self.storage_options, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.storage_options.items()):
            raise ValueError("dataset storage_options must map strings to strings")

    @classmethod
    def coerce(cls, value: Any) -> "DatasetRef | None":
        """A recipe value (None, a URI string, a mapping or a DatasetRef) as a DatasetRef."""
        if value is None or isinstance(value, DatasetRef):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping):
            allowed = ["generate", "storage_options", "uri", "version"]
            unknown = sorted(set(value) - set(allowed))
            if unknown:
                raise ValueError(f"unknown dataset key(s) {unknown}; allowed: {allowed}")
            return cls(**value)
        raise ValueError(f"dataset must be a URI or {{uri, version}}, got {type(value).__name__}")


@dataclass(frozen=True)
class DatasetVersion:
    uri: str
    version: int
    kind: str
    content_hash: str
    rows: int
    committed_at: str  # ISO 8601, UTC
    metadata: dict[str, str] = field(default_factory=dict)  # what the writing stage said about it

    @classmethod
    def from_commit(cls, uri: str, commit: Mapping[str, Any]) -> "DatasetVersion":
        stamp = datetime.fromtimestamp(commit["timestamp"] / 1000, tz=timezone.utc)
        extra = {k[len(META_PREFIX + "meta."):]: v for k, v in commit.items() if k.startswith(META_PREFIX + "meta.")}
        return cls(uri=uri, version=int(commit["version"]), kind=commit[META_PREFIX + "kind"],
                   content_hash=commit[META_PREFIX + "content_hash"], rows=int(commit[META_PREFIX + "rows"]),
                   committed_at=stamp.isoformat(timespec="seconds"), metadata=extra)

    def commit_metadata(self) -> dict[str, str]:
        return {META_PREFIX + "kind": self.kind, META_PREFIX + "content_hash": self.content_hash,
                META_PREFIX + "rows": str(self.rows),
                **{f"{META_PREFIX}meta.{k}": str(v) for k, v in self.metadata.items()}}
