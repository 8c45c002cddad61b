"""Optional GRPO stage with TRL: sample several replies per reader prompt, reward them, and
push the policy toward the better ones of each group.

Rewards, mixed by recipe weights: the reward model from `training/align.py reward` (a learned
preference score) and the rule rewards of `rule_rewards.py` (cite the passage that covers the
question; say "not covered" when none does). A weight of 0 leaves that reward out.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatstack.alignment.reader_data import ReaderMix, reader_conversations
from chatstack.alignment.rule_rewards import CITATION
from chatstack.alignment.compute import ComputeSettings
from chatstack.recipes import check_ranges, recipe_from_dict

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RewardMix:
    reward_model: float = 0.0
    cites_covering_passage: float = 1.0
    says_not_covered: float = 1.0

    def __post_init__(self) -> None:
        values = dataclasses.asdict(self)
        if min(values.values()) < 0 or sum(values.values()) <= 0:
            raise ValueError(f"reward weights must be >= 0 and not all zero, got {values}")


@dataclass(frozen=True)
class GRPORecipe:
    base_model: Path
    output_dir: Path
    reward_model: Path | None = None  # folder written by `align.py reward`; needed when its weight > 0
    rewards: RewardMix = RewardMix()
    prompts: int = 200
    unanswerable: float = 0.3  # share of prompts no passage covers
    num_generations: int = 4  # replies sampled per prompt (the group)
    prompts_per_step: int = 2
    max_completion_length: int = 48
    temperature: float = 1.0
    lr: float = 1e-4
    beta: float = 0.04  # KL penalty toward the starting policy
    max_steps: int = 30
    time_budget_s: float = 300.0
    eval_conversations: int = 40
    seed: int = 0
    compute: ComputeSettings = ComputeSettings()  # device, precision, checkpointing, accumulation

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_model", Path(self.base_model))
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        if self.reward_model is not None:
            object.__setattr__(self, "reward_model", Path(self.reward_model))
        check_ranges(self, ("prompts", "prompts_per_step", "max_completion_length", "max_steps", "eval_conversations"),
                     ("temperature", "lr", "time_budget_s"))
        if self.num_generations < 2:
            raise ValueError(f"num_generations must be >= 2 (GRPO compares replies within a group), "
                             f"got {self.num_generations}")
        if not 0 <= self.unanswerable <= 1:
            raise ValueError(f"unanswerable must be in [0, 1], got {self.unanswerable}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if self.rewards.reward_model > 0 and self.reward_model is None:
            raise ValueError("reward_model: a folder is required when rewards.reward_model > 0")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "GRPORecipe":
        if isinstance(raw.get("rewards"), dict):
            raw = {**raw, "rewards": {k: float(v) for k, v in raw["rewards"].items()}}
        return recipe_from_dict(cls, raw, {"rewards": RewardMix, "compute": ComputeSettings},
                                ("unanswerable", "temperature", "lr", "beta", "time_budget_s"))


def prompt_records(count: int, seed: int, unanswerable: float) -> list[dict]:
    """Single-turn reader prompts (system with passages + question) and the covering citation."""
    mix = ReaderMix(unanswerable=unanswerable, refusal=0.0, multi_turn=0.0)
    records = []
    for *prompt, answer in reader_conversations(count, seed, mix):
        gold = CITATION.search(answer.content)
        records.append({"prompt": [{"role": m.role, "content": m.content} for m in prompt],
                        "gold_citation": gold.group(0) if gold else ""})
    return records


def _reward_functions(recipe: GRPORecipe) -> tuple[list, list[float]]:
    from chatstack.alignment.rule_rewards import RULE_REWARDS

    functions, weights = [], []
    if recipe.rewards.reward_model > 0:
        functions.append(str(recipe.reward_model))  # TRL loads it as a sequence-classification model
        weights.append(recipe.rewards.reward_model)
    for name, function in RULE_REWARDS.items():
        if getattr(recipe.rewards, name) > 0:
            functions.append(function)
            weights.append(getattr(recipe.rewards, name))
    return functions, weights


def _mean_reward(log_history: list[dict], first: bool) -> float | None:
    rewards = [entry["reward"] for entry in log_history if "reward" in entry]
    return (rewards[0] if first else rewards[-1]) if rewards else None


def main(recipe: GRPORecipe) -> dict:
    """Run GRPO from `base_model`; save the policy to `output_dir`; return the summary."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from chatstack.alignment.reader_eval import evaluate_loaded_reader
    from chatstack.alignment.stage_output import partial_dir, save_stage
    from chatstack.alignment.time_budget import TimeBudget

    tokenizer = AutoTokenizer.from_pretrained(str(recipe.base_model))
    functions, weights = _reward_functions(recipe)
    names = [f if isinstance(f, str) else f.__name__ for f in functions]  # TRL swaps paths for loaded models
    args = GRPOConfig(
        output_dir=str(partial_dir(recipe.output_dir) / "trainer"), learning_rate=recipe.lr, beta=recipe.beta,
        per_device_train_batch_size=recipe.prompts_per_step * recipe.num_generations,
        num_generations=recipe.num_generations, max_completion_length=recipe.max_completion_length,
        temperature=recipe.temperature, reward_weights=weights, max_steps=recipe.max_steps, logging_steps=1,
        save_strategy="no", report_to=[], seed=recipe.seed, dataloader_num_workers=0,
        **recipe.compute.trainer_kwargs(),
    )
    budget = TimeBudget(recipe.time_budget_s)
    trainer = GRPOTrainer(
        model=str(recipe.base_model), reward_funcs=functions, args=args, processing_class=tokenizer,
        train_dataset=Dataset.from_list(prompt_records(recipe.prompts, recipe.seed, recipe.unanswerable)),
        callbacks=[budget],
    )
    started = time.monotonic()
    result = trainer.train()
    wall_s = round(time.monotonic() - started, 1)
    model = trainer.model.eval()
    reader = evaluate_loaded_reader(model, tokenizer, recipe.eval_conversations)
    summary = {
        "base_model": str(recipe.base_model), "steps": result.global_step, "train_loss": result.training_loss,
        "reward_functions": names, "reward_weights": weights,
        "mean_reward_first_step": _mean_reward(trainer.state.log_history, first=True),
        "mean_reward_last_step": _mean_reward(trainer.state.log_history, first=False),
        "reader_eval": dataclasses.asdict(reader), "wall_s": wall_s, "stopped_by_time_budget": budget.stopped_early,
    }
    save_stage(recipe.output_dir, model, tokenizer, recipe.base_model, "grpo_summary.json", summary)
    logger.info("GRPO done: %s", summary)
    return summary
