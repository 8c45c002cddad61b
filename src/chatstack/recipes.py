"""YAML training recipes with `--set key=value` overrides (dotted keys reach nested tables)."""

from __future__ import annotations

from pathlib import Path

import yaml


def apply_override(recipe: dict, assignment: str) -> None:
    key, sep, value = assignment.partition("=")
    if not sep:
        raise ValueError(f"--set expects KEY=VALUE, got {assignment!r}")
    *parents, leaf = key.split(".")
    target = recipe
    for parent in parents:
        target = target.setdefault(parent, {})
    target[leaf] = yaml.safe_load(value)


def load_recipe(path: Path, overrides: list[str] = ()) -> dict:
    recipe = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(recipe, dict):
        raise ValueError(f"{path}: a recipe must be a mapping of field: value")
    for assignment in overrides:
        apply_override(recipe, assignment)
    return recipe
