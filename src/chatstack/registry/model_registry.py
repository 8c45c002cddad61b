"""A model registry on the local file system, laid out like Triton's version folders.

    artifacts/registry/<name>/<version>/      the model files + registration.json (version = 1, 2, 3, ...)
    artifacts/registry/<name>/served.json     {"version": N, "since": ...}: the version serving uses

Registering copies the model folder in (`<version>.partial`, renamed when complete), so a
registered version never changes, whatever later happens to the folder it came from.
Promoting a version rewrites `served.json` atomically and, when the registry has an export
root, refreshes `<export_root>/<name>` with a copy of that version — the folder deploy
configs name (`model.dir = "../artifacts/demo-chat"`), so serving always reads the served
version (docs/decisions/0005-model-versions.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from chatstack.evaluation.models import check_model_dir, training_records

REGISTRATION_FILE = "registration.json"
SERVED_FILE = "served.json"
LINEAGE_FILE = "lineage.json"  # written by chatstack.datasets.lineage.write_lineage
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class Registration:
    """What `registration.json` records about one version."""

    name: str
    version: int
    source: str  # the folder it was copied from
    created: str  # UTC, ISO 8601
    training: dict = field(default_factory=dict)  # the training stages' summaries (recipe figures, base model, data)
    datasets: dict = field(default_factory=dict)  # lineage.json: the dataset versions the last stage read
    evaluation: dict = field(default_factory=dict)  # figures from `chatstack eval model` or the reader eval
    note: str = ""

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, default=str)

    @classmethod
    def read(cls, folder: Path) -> "Registration":
        raw = json.loads((folder / REGISTRATION_FILE).read_text(encoding="utf-8"))
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"name must be 1-100 characters of letters, digits, '.', '_' or '-', got {name!r}")
    return name


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


class ModelRegistry:
    def __init__(self, root: Path, export_root: Path | None = None):
        self.root, self.export_root = Path(root), None if export_root is None else Path(export_root)

    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []

    def versions(self, name: str) -> list[int]:
        folder = self.root / check_name(name)
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / REGISTRATION_FILE).is_file())

    def version_dir(self, name: str, version: int) -> Path:
        folder = self.root / check_name(name) / str(version)
        if not (folder / REGISTRATION_FILE).is_file():
            raise ValueError(f"version: {name} has no version {version}; registered: {self.versions(name)}")
        return folder

    def registration(self, name: str, version: int) -> Registration:
        return Registration.read(self.version_dir(name, version))

    def served_version(self, name: str) -> int | None:
        pointer = self.root / check_name(name) / SERVED_FILE
        return json.loads(pointer.read_text(encoding="utf-8"))["version"] if pointer.is_file() else None

    def served_dir(self, name: str) -> Path | None:
        version = self.served_version(name)
        return None if version is None else self.version_dir(name, version)

    def _reserve_version(self, name: str) -> tuple[int, Path]:
        """The next free version number, claimed by creating its `.partial` folder (safe against races)."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            taken = [int(p.name.split(".")[0]) for p in folder.iterdir() if p.name.split(".")[0].isdigit()]
            version = max(taken, default=0) + 1
            staging = folder / f"{version}.partial"
            try:
                staging.mkdir()
            except FileExistsError:
                continue
            return version, staging

    def register(self, model_dir: Path, name: str, evaluation: dict | None = None, note: str = "",
                 serve: bool = True) -> Registration:
        """Copy `model_dir` in as the next version; make it the served one unless `serve` is False."""
        model_dir = check_model_dir(model_dir, "model").resolve()
        version, staging = self._reserve_version(check_name(name))
        try:
            shutil.copytree(model_dir, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns(REGISTRATION_FILE))
            lineage = model_dir / LINEAGE_FILE
            record = Registration(name, version, str(model_dir), datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                  training_records(model_dir),
                                  json.loads(lineage.read_text(encoding="utf-8")) if lineage.is_file() else {},
                                  evaluation or {}, note)
            (staging / REGISTRATION_FILE).write_text(record.to_json(), encoding="utf-8")
            staging.rename(self.root / name / str(version))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if serve:
            self.promote(name, version)
        return record

    def promote(self, name: str, version: int) -> Path:
        """Serve `version` of `name`; returns the folder serving should load."""
        source = self.version_dir(name, version)
        since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        _write_atomically(self.root / name / SERVED_FILE, json.dumps({"version": version, "since": since}) + "\n")
        return self._export(name, source) if self.export_root is not None else source

    def _export(self, name: str, source: Path) -> Path:
        target = self.export_root / name
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        return target
