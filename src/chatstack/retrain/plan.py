"""The retraining steps as CLI commands, built from one validated config.

Every step is a plain command (`chatstack feedback export`, `training/align.py dpo`,
`chatstack eval model`, `chatstack register --if-better`), so the same run can be driven
by hand, by `chatstack retrain`, or by the Airflow DAG without any code of its own.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from chatstack import project

STEP_NAMES = ("feedback-export", "dpo", "eval", "register")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Step:
    name: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class RetrainConfig:
    """One retraining run. Paths are resolved against the project root when relative."""

    run_id: str  # names the run's folder; Airflow passes its run_id (sanitised here)
    runs_root: Path = project.ARTIFACTS / "retrain"
    model_name: str = "demo-chat"
    baseline: Path = project.ARTIFACTS / "demo-chat"  # the served version, the A/B baseline and DPO start point
    dpo_recipe: Path = project.ROOT / "training" / "recipes" / "demo_dpo.yaml"
    preference_table: str = str(project.ARTIFACTS / "datasets" / "preference_pairs")
    feedback_table: str = str(project.ARTIFACTS / "datasets" / "feedback_pairs")
    deployment_config: Path = project.DEFAULT_CONFIG
    dpo_overrides: tuple[str, ...] = ()  # extra `--set key=value` for the DPO recipe
    eval_args: tuple[str, ...] = ()  # extra flags for `chatstack eval model` (e.g. --metrics)
    register_args: tuple[str, ...] = ()  # extra flags for `chatstack register` (e.g. --registry)
    python: str = field(default=sys.executable)

    def __post_init__(self) -> None:
        if not isinstance(self.run_id, str) or not _UNSAFE.sub("", self.run_id):
            raise ValueError(f"run_id must contain letters or digits, got {self.run_id!r}")
        if not self.model_name or _UNSAFE.search(self.model_name):
            raise ValueError(f"model_name must be letters, digits, '.', '_' or '-', got {self.model_name!r}")
        for name in ("runs_root", "baseline", "dpo_recipe", "deployment_config"):
            path = Path(getattr(self, name))
            object.__setattr__(self, name, path if path.is_absolute() else project.ROOT / path)
        for name in ("dpo_overrides", "eval_args", "register_args"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        bad = [o for o in self.dpo_overrides if "=" not in o]
        if bad:
            raise ValueError(f"dpo_overrides must be KEY=VALUE, got {bad}")

    @property
    def run_dir(self) -> Path:
        return self.runs_root / _UNSAFE.sub("_", self.run_id).strip("_")

    @property
    def candidate(self) -> Path:
        return self.run_dir / "candidate"

    @property
    def eval_dir(self) -> Path:
        return self.run_dir / "eval"


def retrain_steps(cfg: RetrainConfig) -> list[Step]:
    """The four commands of a run, in order."""
    chatstack = (cfg.python, "-m", "chatstack", "--config", str(cfg.deployment_config))
    dpo_sets = [f"base_model={cfg.baseline}", f"output_dir={cfg.candidate}",
                f"dataset.uri={cfg.preference_table}", f"feedback_dataset.uri={cfg.feedback_table}",
                "feedback_pairs=null",  # the versioned export replaces the JSONL file: no pair counted twice
                *cfg.dpo_overrides]
    return [
        Step("feedback-export", (*chatstack, "feedback", "export", "--out", str(cfg.run_dir / "feedback_pairs.jsonl"),
                                 "--table", cfg.feedback_table)),
        Step("dpo", (cfg.python, str(project.ROOT / "training" / "align.py"), "dpo", "--recipe", str(cfg.dpo_recipe),
                     *(arg for s in dpo_sets for arg in ("--set", s)))),
        Step("eval", (*chatstack, "eval", "model", "--candidate", str(cfg.candidate), "--baseline", str(cfg.baseline),
                      "--out", str(cfg.eval_dir), "--reader-decoding", str(cfg.deployment_config), *cfg.eval_args)),
        Step("register", (*chatstack, "register", "--model", str(cfg.candidate), "--name", cfg.model_name,
                          "--report", str(cfg.eval_dir / "report.json"), "--if-better", *cfg.register_args)),
    ]
