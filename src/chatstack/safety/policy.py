"""The safety policy as data: per-category threshold, action and refusal message.

Loaded from YAML (default: `default_policy.yaml` next to this module) and
validated on construction, so a typo in a deployment's policy fails at start-up.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_POLICY_PATH = Path(__file__).with_name("default_policy.yaml")
CATEGORIES = (
    "violence", "self_harm", "sexual_minors", "hate_harassment",
    "weapons_drugs", "malware_cyber", "privacy", "jailbreak",
)
BENIGN = "benign"


class Action(enum.Enum):
    ALLOW = "allow"
    FLAG = "flag"
    REDACT = "redact"
    REFUSE = "refuse"


@dataclass(frozen=True)
class CategoryPolicy:
    name: str
    threshold: float
    action: Action
    message: str
    output: bool = True

    def __post_init__(self) -> None:
        if self.name not in CATEGORIES:
            raise ValueError(f"policy category {self.name!r} is unknown; allowed: {list(CATEGORIES)}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"policy.categories.{self.name}.threshold must be in (0, 1], got {self.threshold}")
        if self.action is Action.REFUSE and not self.message.strip():
            raise ValueError(f"policy.categories.{self.name}.message is required when action is refuse")


@dataclass(frozen=True)
class SafetyPolicy:
    categories: dict[str, CategoryPolicy]
    pii_action: Action = Action.REDACT
    harm_threshold: float = 0.7  # summed category scores that fire the top category


    def __post_init__(self) -> None:
        missing = sorted(set(CATEGORIES) - set(self.categories))
        if missing:
            raise ValueError(f"policy.categories is missing {missing}; every category needs an entry")
        if self.pii_action not in (Action.ALLOW, Action.FLAG, Action.REDACT):
            raise ValueError(f"policy.pii.action must be allow, flag or redact, got {self.pii_action.value!r}")
        if not 0.0 < self.harm_threshold <= 1.0:
            raise ValueError(f"policy.harm_threshold must be in (0, 1], got {self.harm_threshold}")

    def output_categories(self) -> tuple[str, ...]:
        return tuple(name for name, rule in self.categories.items() if rule.output)


def _action(value: Any, where: str) -> Action:
    try:
        return Action(value)
    except ValueError:
        raise ValueError(f"{where} must be one of {[a.value for a in Action]}, got {value!r}") from None


def _category(name: str, data: Any) -> CategoryPolicy:
    where = f"policy.categories.{name}"
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - {"threshold", "action", "message", "output"})
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; allowed: action, message, output, threshold")
    threshold = data.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ValueError(f"{where}.threshold must be a number in (0, 1], got {threshold!r}")
    return CategoryPolicy(name, float(threshold), _action(data.get("action"), f"{where}.action"),
                          str(data.get("message", "")), bool(data.get("output", True)))


def policy_from_dict(data: Any) -> SafetyPolicy:
    if not isinstance(data, dict) or not isinstance(data.get("categories"), dict):
        raise ValueError("policy must be a mapping with a `categories` mapping")
    unknown = sorted(set(data) - {"categories", "pii", "harm_threshold"})
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in policy; allowed: categories, harm_threshold, pii")
    categories = {name: _category(name, value) for name, value in data["categories"].items()}
    pii_action = _action((data.get("pii") or {}).get("action", "redact"), "policy.pii.action")
    harm_threshold = data.get("harm_threshold", 0.7)
    if isinstance(harm_threshold, bool) or not isinstance(harm_threshold, (int, float)):
        raise ValueError(f"policy.harm_threshold must be a number in (0, 1], got {harm_threshold!r}")
    return SafetyPolicy(categories, pii_action, float(harm_threshold))


def load_policy(path: Path | None = None) -> SafetyPolicy:
    """Read a policy YAML; `None` reads the packaged default."""
    source = Path(path) if path is not None else DEFAULT_POLICY_PATH
    return policy_from_dict(yaml.safe_load(source.read_text()))
