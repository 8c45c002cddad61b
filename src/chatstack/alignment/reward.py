"""Reward model with TRL's RewardTrainer: a scalar head on a causal-LM base, trained on preference pairs.

It learns to score a whole conversation (prompt and reply) so that the chosen reply of each
pair scores above the rejected one (Bradley–Terry loss); the GRPO stage then uses it as a
learned reward. Held-out pairwise accuracy is measured on the DPO stage's held-out pairs
(topics never trained on).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from chatstack.alignment.preference_data import ObjectiveWeights, preference_records
from chatstack.alignment.compute import ComputeSettings
from chatstack.recipes import check_ranges, recipe_from_dict

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RewardRecipe:
    base_model: Path
    output_dir: Path
    train_pairs: int = 600
    eval_pairs: int = 60
    lr: float = 1e-3
    batch_size: int = 8
    epochs: float = 1.0
    max_length: int = 1024
    time_budget_s: float = 240.0
    center_rewards_coefficient: float | None = 0.01  # keeps scores near 0 so they compose with rule rewards
    seed: int = 0
    compute: ComputeSettings = ComputeSettings()  # device, precision, checkpointing, accumulation
    weights: ObjectiveWeights = ObjectiveWeights()

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_model", Path(self.base_model))
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        check_ranges(self, ("train_pairs", "eval_pairs", "batch_size", "max_length"), ("lr", "epochs", "time_budget_s"))
        if self.center_rewards_coefficient is not None and self.center_rewards_coefficient < 0:
            raise ValueError(f"center_rewards_coefficient must be >= 0 or null, got {self.center_rewards_coefficient}")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "RewardRecipe":
        return recipe_from_dict(cls, raw, {"weights": ObjectiveWeights, "compute": ComputeSettings},
                                ("lr", "epochs", "time_budget_s"))


def conversation_reward(model, tokenizer, messages: list[dict], max_length: int = 1024) -> float:
    """The reward model's scalar score of one conversation, rendered with the served chat template."""
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, truncation=True,
                                        max_length=max_length)["input_ids"]
    with torch.inference_mode():
        return float(model(input_ids=torch.tensor([ids])).logits[0, 0])


def load_reward_model(folder: Path):
    """A saved reward model and its tokenizer, ready to score."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=1).eval()
    return model, tokenizer


def main(recipe: RewardRecipe) -> dict:
    """Train the reward model; save it to `output_dir`; return the summary with held-out accuracy."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from chatstack.alignment.preference_eval import score_pairs
    from chatstack.alignment.stage_output import partial_dir, save_stage
    from chatstack.alignment.time_budget import TimeBudget

    tokenizer = AutoTokenizer.from_pretrained(str(recipe.base_model))
    train = preference_records(recipe.train_pairs, recipe.seed, recipe.weights)
    held_out = preference_records(recipe.eval_pairs, recipe.seed + 1, recipe.weights, held_out=True)
    args = RewardConfig(
        output_dir=str(partial_dir(recipe.output_dir) / "trainer"), learning_rate=recipe.lr,
        per_device_train_batch_size=recipe.batch_size, num_train_epochs=recipe.epochs, max_length=recipe.max_length,
        center_rewards_coefficient=recipe.center_rewards_coefficient, lr_scheduler_type="cosine", warmup_steps=0.1,
        logging_steps=10, save_strategy="no", report_to=[], seed=recipe.seed,
        dataloader_num_workers=0, **recipe.compute.trainer_kwargs(),
    )
    budget = TimeBudget(recipe.time_budget_s)
    trainer = RewardTrainer(
        model=str(recipe.base_model), args=args, processing_class=tokenizer, callbacks=[budget],
        train_dataset=Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in train]),
    )
    started = time.monotonic()
    result = trainer.train()
    wall_s = round(time.monotonic() - started, 1)
    model = trainer.model.eval()
    held = score_pairs(held_out, lambda messages: conversation_reward(model, tokenizer, messages, recipe.max_length))
    summary = {
        "base_model": str(recipe.base_model), "steps": result.global_step, "train_loss": result.training_loss,
        "held_out_pairwise_accuracy": held.accuracy, "held_out_reward_margin": held.mean_margin,
        "held_out_accuracy_by_objective": held.by_objective, "held_out_pairs": held.pairs,
        "wall_s": wall_s, "stopped_by_time_budget": budget.stopped_early,
    }
    save_stage(recipe.output_dir, model, tokenizer, recipe.base_model, "reward_summary.json", summary)
    logger.info("reward model done: %s", summary)
    return summary
