"""YAML training recipes with `--set key=value` overrides (dotted keys reach nested tables)."""

from __future__ import annotations

import dataclasses
import json
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


def check_ranges(obj, at_least_one: tuple[str, ...], positive: tuple[str, ...]) -> None:
    """ValueError naming the first field of `obj` below 1 (counts) or not above 0 (rates, budgets)."""
    for name in at_least_one:
        if getattr(obj, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(obj, name)}")
    for name in positive:
        if not getattr(obj, name) > 0:
            raise ValueError(f"{name} must be > 0, got {getattr(obj, name)}")


def check_checkpoint_interval(name: str, steps) -> None:
    """ValueError naming `name` unless `steps` (steps between checkpoints) is an integer >= 0."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"{name} must be an integer >= 0 (0: no checkpoints), got {steps!r}")


def recipe_key(recipe, free: tuple[str, ...]) -> str:
    """The recipe a checkpoint was written under, as text, leaving out the `free` fields (those that may change
    between attempts of one run without making its checkpoint stale)."""
    return json.dumps({k: v for k, v in dataclasses.asdict(recipe).items() if k not in free},
                      sort_keys=True, default=str)


def recipe_from_dict(cls, raw: dict, nested: dict[str, type], floats: tuple[str, ...]):
    """Build a recipe dataclass: unknown keys are errors; nested tables become their dataclasses;
    YAML numbers such as `5e-4` (read as strings) become floats."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} key(s) {unknown}; allowed: {sorted(known)}")
    raw = dict(raw)
    for name, nested_cls in nested.items():
        if isinstance(raw.get(name), dict):
            try:
                raw[name] = nested_cls(**raw[name])
            except TypeError as exc:
                raise ValueError(f"{name}: {exc}") from None
    for name in floats:
        if name in raw:
            raw[name] = float(raw[name])
    return cls(**raw)
