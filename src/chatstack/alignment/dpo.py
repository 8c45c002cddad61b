"""Direct preference optimisation with TRL, mixing objectives by recipe weights."""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatstack.alignment.compute import ComputeSettings
from chatstack.alignment.preference_data import ObjectiveWeights
from chatstack.datasets import DatasetRef
from chatstack.recipes import check_ranges, recipe_from_dict

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DPORecipe:
    base_model: Path
    output_dir: Path
    train_pairs: int = 600
    eval_pairs: int = 60
    beta: float = 0.1
    lr: float = 5e-4
    batch_size: int = 8
    epochs: float = 1.0
    max_length: int = 1024
    time_budget_s: float = 240.0
    seed: int = 0
    weights: ObjectiveWeights = ObjectiveWeights()
    feedback_pairs: Path | None = None  # JSONL from `chatstack feedback export`, added to training
    dataset: DatasetRef | None = None  # versioned preference set, optionally pinned (versioned_sets.py)
    feedback_dataset: DatasetRef | None = None  # versioned feedback export, latest or pinned
    compute: ComputeSettings = ComputeSettings()  # device, precision, checkpointing, accumulation

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_model", Path(self.base_model))
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        if self.feedback_pairs is not None:
            object.__setattr__(self, "feedback_pairs", Path(self.feedback_pairs))
        object.__setattr__(self, "dataset", DatasetRef.coerce(self.dataset))
        object.__setattr__(self, "feedback_dataset", DatasetRef.coerce(self.feedback_dataset))
        check_ranges(self, ("train_pairs", "eval_pairs", "batch_size", "max_length"),
                     ("beta", "lr", "epochs", "time_budget_s"))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "DPORecipe":
        if isinstance(raw.get("weights"), dict):
            raw = {**raw, "weights": {k: float(v) for k, v in raw["weights"].items()}}
        return recipe_from_dict(cls, raw, {"weights": ObjectiveWeights, "compute": ComputeSettings}, ("beta", "lr", "epochs", "time_budget_s"))


def _without_objective(records: list[dict]) -> list[dict]:
    return [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in records]


def main(recipe: DPORecipe) -> dict:
    """Align `base_model` on the mixed preference set; save to `output_dir`; return the summary."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from chatstack.alignment.time_budget import TimeBudget
    from chatstack.alignment.versioned_sets import dpo_pairs
    from chatstack.datasets import write_lineage

    tokenizer = AutoTokenizer.from_pretrained(str(recipe.base_model))
    train, held_out, used = dpo_pairs(recipe)
    work = recipe.output_dir.with_name(recipe.output_dir.name + ".partial")
    args = DPOConfig(
        output_dir=str(work / "trainer"), beta=recipe.beta, learning_rate=recipe.lr,
        per_device_train_batch_size=recipe.batch_size, per_device_eval_batch_size=recipe.batch_size,
        num_train_epochs=recipe.epochs, max_length=recipe.max_length, logging_steps=10, save_strategy="no",
        report_to=[], seed=recipe.seed, dataloader_num_workers=0, **recipe.compute.trainer_kwargs(),
    )
    budget = TimeBudget(recipe.time_budget_s)
    trainer = DPOTrainer(
        model=str(recipe.base_model), args=args, train_dataset=Dataset.from_list(_without_objective(train)),
        eval_dataset=Dataset.from_list(_without_objective(held_out)), processing_class=tokenizer, callbacks=[budget],
    )
    before = trainer.evaluate()
    started = time.monotonic()
    result = trainer.train()
    after = trainer.evaluate()
    summary = {
        "base_model": str(recipe.base_model), "steps": result.global_step, "train_loss": result.training_loss,
        "held_out_preference_accuracy_before": before.get("eval_rewards/accuracies"),
        "held_out_preference_accuracy": after.get("eval_rewards/accuracies"),
        "held_out_reward_margin": after.get("eval_rewards/margins"),
        "objectives": {o: sum(r["objective"] == o for r in train) for o in ("helpfulness", "safety", "feedback")},
        "wall_s": round(time.monotonic() - started, 1), "stopped_by_time_budget": budget.stopped_early,
    }
    shutil.rmtree(work / "trainer", ignore_errors=True)
    trainer.model.save_pretrained(str(work))
    tokenizer.save_pretrained(str(work))
    if (recipe.base_model / "generation_config.json").exists():
        shutil.copy2(recipe.base_model / "generation_config.json", work / "generation_config.json")
    (work / "dpo_summary.json").write_text(json.dumps(summary, indent=2))
    write_lineage(work, "dpo", used)
    shutil.rmtree(recipe.output_dir, ignore_errors=True)
    work.rename(recipe.output_dir)
    logger.info("DPO done: %s", summary)
    return summary
