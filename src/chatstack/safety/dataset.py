"""Labelled moderation examples expanded from template files (data/safety/*.yaml).

A file holds `fillers` (named word lists) and `classes` (label → templates with
`{filler}` slots). Expansion is seeded and deterministic. Training and evaluation
files use different templates and fillers, so evaluation measures generalisation
to phrasings the classifier never saw. An unknown `{slot}` fails loudly.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from chatstack.project import ROOT
from chatstack.safety.policy import BENIGN, CATEGORIES

DATA_DIR = ROOT / "data" / "safety"
TRAIN_PATH = DATA_DIR / "train.yaml"
EVAL_PATH = DATA_DIR / "eval.yaml"
BLIND_PATH = DATA_DIR / "blind.yaml"  # literal prompts written apart from both template files
_SLOT = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Example:
    text: str
    label: str  # BENIGN or one of CATEGORIES


@dataclass(frozen=True)
class PiiExample:
    text: str
    value: str  # the personal datum that must disappear
    kind: str


def _fill(template: str, fillers: dict[str, list[str]], rng: random.Random, where: str) -> str:
    def pick(match: re.Match) -> str:
        name = match.group(1)
        if name not in fillers:
            raise ValueError(f"{where}: template slot {{{name}}} has no filler list; known: {sorted(fillers)}")
        return rng.choice(fillers[name])

    return _SLOT.sub(pick, template)


def expand_class(label: str, templates: list[str], fillers: dict[str, list[str]], count: int, seed: int) -> list[str]:
    """Up to `count` distinct texts, drawn round-robin over the templates."""
    rng = random.Random(f"{seed}:{label}")
    texts: dict[str, None] = {}
    for attempt in range(count * 4):
        if len(texts) >= count:
            break
        template = templates[attempt % len(templates)]
        texts[_fill(template, fillers, rng, f"classes.{label}")] = None
    return list(texts)


def load_examples(path: Path, per_class: int = 300, seed: int = 0) -> list[Example]:
    data = yaml.safe_load(Path(path).read_text())
    fillers, classes = data.get("fillers", {}), data["classes"]
    unknown = sorted(set(classes) - {BENIGN, *CATEGORIES})
    if unknown:
        raise ValueError(f"{path}: unknown class(es) {unknown}; allowed: {[BENIGN, *CATEGORIES]}")
    examples = []
    for label, templates in classes.items():
        count = per_class * 3 if label == BENIGN else per_class
        examples += [Example(text, label) for text in expand_class(label, templates, fillers, count, seed)]
    return examples


def load_pii_examples(path: Path, per_kind: int = 40, seed: int = 0) -> list[PiiExample]:
    data = yaml.safe_load(Path(path).read_text())
    rng = random.Random(seed)
    examples = []
    for kind, spec in data.get("pii", {}).items():
        for index in range(per_kind):
            value = rng.choice(spec["values"])
            template = spec["templates"][index % len(spec["templates"])]
            examples.append(PiiExample(template.replace("{value}", value), value, kind))
    return examples


def load_literal_examples(path: Path) -> list[Example]:
    """Literal prompts under `examples: {label: [text, …]}` (no templates, no slots)."""
    data = yaml.safe_load(Path(path).read_text())
    classes = data.get("examples") if isinstance(data, dict) else None
    if not isinstance(classes, dict):
        raise ValueError(f"{path}: expected a mapping `examples: {{label: [text, ...]}}`")
    unknown = sorted(set(classes) - {BENIGN, *CATEGORIES})
    if unknown:
        raise ValueError(f"{path}: unknown class(es) {unknown}; allowed: {[BENIGN, *CATEGORIES]}")
    examples = []
    for label, texts in classes.items():
        if not isinstance(texts, list) or not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError(f"{path}: examples.{label} must be a list of non-empty strings")
        examples += [Example(text, label) for text in texts]
    return examples
