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
from chatstack.alignment.preference_data import ObjectiveWeights, PairConstruction
from chatstack.datasets import DatasetRef
from chatstack.rag.chunking import check_chunk_sizes
from chatstack.recipes import check_checkpoint_interval, check_ranges, recipe_from_dict

logger = logging.getLogger(__name__)

# TRL loss types that fit a paired, offline preference set; "sft" adds the chosen reply's NLL (RPO).
LOSS_TYPES = ("sigmoid", "sigmoid_norm", "ipo", "hinge", "robust", "sft")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")


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
    checkpoint_steps: int = 50  # Trainer checkpoints to resume an interrupted run from (0: none)
    seed: int = 0
    weights: ObjectiveWeights = ObjectiveWeights()
    pair_construction: PairConstruction = PairConstruction.INDEPENDENT  # see preference_data.py
    # served_chunks pairs: ingest's chunking, as deploy/demo.toml's retrieval.chunk_tokens / chunk_overlap_tokens
    chunk_tokens: int = 200
    chunk_overlap_tokens: int = 40
    feedback_pairs: Path | None = None  # JSONL from `chatstack feedback export`, added to training
    loss_type: tuple[str, ...] = ("sigmoid",)
    loss_weights: tuple[float, ...] | None = None  # one per loss_type; None: all 1.0
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.0
    precompute_ref_log_probs: bool = False  # one reference pass before training instead of one per step
    # parameters to train, by name part (e.g. [v_proj, o_proj]); the rest stay frozen. None: all
    trainable_modules: tuple[str, ...] | None = None
    dataset: DatasetRef | None = None  # versioned preference set, optionally pinned (versioned_sets.py)
    feedback_dataset: DatasetRef | None = None  # versioned feedback export, latest or pinned
    compute: ComputeSettings = ComputeSettings()  # device, precision, checkpointing, accumulation

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_model", Path(self.base_model))
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        if self.feedback_pairs is not None:
            object.__setattr__(self, "feedback_pairs", Path(self.feedback_pairs))
        object.__setattr__(self, "pair_construction", PairConstruction.coerce(self.pair_construction))
        object.__setattr__(self, "dataset", DatasetRef.coerce(self.dataset))
        object.__setattr__(self, "feedback_dataset", DatasetRef.coerce(self.feedback_dataset))
        check_chunk_sizes(self.chunk_tokens, self.chunk_overlap_tokens, ("chunk_tokens", "chunk_overlap_tokens"))
        check_ranges(self, ("train_pairs", "eval_pairs", "batch_size", "max_length"),
                     ("beta", "lr", "epochs", "time_budget_s"))
        check_checkpoint_interval("checkpoint_steps", self.checkpoint_steps)
        self._check_loss()

    def _check_loss(self) -> None:
        object.__setattr__(self, "loss_type", tuple([self.loss_type] if isinstance(self.loss_type, str)
                                                    else self.loss_type))
        unknown = [t for t in self.loss_type if t not in LOSS_TYPES]
        if not self.loss_type or unknown:
            raise ValueError(f"loss_type must be a non-empty list of {LOSS_TYPES}, got {list(self.loss_type)}")
        if self.loss_weights is not None:
            object.__setattr__(self, "loss_weights", tuple(float(w) for w in self.loss_weights))
            if len(self.loss_weights) != len(self.loss_type) or min(self.loss_weights) < 0:
                raise ValueError(f"loss_weights must be {len(self.loss_type)} value(s) >= 0 (one per loss_type), "
                                 f"got {list(self.loss_weights)}")
        if self.trainable_modules is not None:
            object.__setattr__(self, "trainable_modules", tuple([self.trainable_modules]
                                                                if isinstance(self.trainable_modules, str)
                                                                else self.trainable_modules))
            if not self.trainable_modules or not all(isinstance(m, str) and m for m in self.trainable_modules):
                raise ValueError(f"trainable_modules must be a non-empty list of parameter name parts, "
                                 f"got {self.trainable_modules!r}")
        if self.lr_scheduler not in SCHEDULERS:
            raise ValueError(f"lr_scheduler must be one of {SCHEDULERS}, got {self.lr_scheduler!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "DPORecipe":
        return recipe_from_dict(cls, raw, {"weights": ObjectiveWeights, "compute": ComputeSettings},
                                ("beta", "lr", "epochs", "time_budget_s", "warmup_ratio"))


def freeze_all_but(model, modules: tuple[str, ...] | None) -> int:
    """Leave only parameters whose name contains one of `modules` trainable; return how many values train."""
    if modules is not None:
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(any(m in name for m in modules))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if trainable == 0:
        raise ValueError(f"trainable_modules {list(modules)} match no parameter of the model")
    return trainable


def _without_objective(records: list[dict]) -> list[dict]:
    return [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in records]


def main(recipe: DPORecipe) -> dict:
    """Align `base_model` on the mixed preference set; save to `output_dir`; return the summary."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from chatstack.alignment.compact_head import compact_heads
    from chatstack.alignment.preference_eval import dpo_preference_score
    from chatstack.alignment.resume import checkpoint_arguments, resume_point, resumed_step
    from chatstack.alignment.time_budget import TimeBudget
    from chatstack.alignment.versioned_sets import dpo_pairs
    from chatstack.datasets import write_lineage

    tokenizer = AutoTokenizer.from_pretrained(str(recipe.base_model))
    train, held_out, used = dpo_pairs(recipe)
    work = recipe.output_dir.with_name(recipe.output_dir.name + ".partial")
    args = DPOConfig(
        output_dir=str(work / "trainer"), beta=recipe.beta, learning_rate=recipe.lr,
        per_device_train_batch_size=recipe.batch_size, per_device_eval_batch_size=recipe.batch_size,
        num_train_epochs=recipe.epochs, max_length=recipe.max_length, logging_steps=10,
        **checkpoint_arguments(recipe.checkpoint_steps),
        report_to=[], seed=recipe.seed, dataloader_num_workers=0, **recipe.compute.trainer_kwargs(),
        loss_type=list(recipe.loss_type), loss_weights=list(recipe.loss_weights) if recipe.loss_weights else None,
        lr_scheduler_type=recipe.lr_scheduler, warmup_steps=recipe.warmup_ratio,  # a float < 1 is a ratio
        precompute_ref_log_probs=recipe.precompute_ref_log_probs,
    )
    budget = TimeBudget(recipe.time_budget_s)
    resume = resume_point(work / "trainer", recipe)  # before the Trainer creates its output folder
    policy = AutoModelForCausalLM.from_pretrained(str(recipe.base_model))
    trainable = freeze_all_but(policy, recipe.trainable_modules)
    with compact_heads():  # on CPU the LM head scores the completions only, not the passages in the prompt
        trainer = DPOTrainer(
            model=policy, args=args, train_dataset=Dataset.from_list(_without_objective(train)),
            processing_class=tokenizer, callbacks=[budget],
        )
    started = time.monotonic()
    result = trainer.train(resume_from_checkpoint=resume)
    train_wall_s = round(time.monotonic() - started, 1)
    # Before training policy == reference, every implicit reward is 0 and accuracy is 0 by construction,
    # so only the trained policy is scored.
    reference = AutoModelForCausalLM.from_pretrained(str(recipe.base_model))
    held = dpo_preference_score(trainer.model, reference, tokenizer, held_out, recipe.beta, recipe.max_length)
    summary = {
        "base_model": str(recipe.base_model), "steps": result.global_step, "train_loss": result.training_loss,
        "held_out_preference_accuracy": held.accuracy, "held_out_reward_margin": held.mean_margin,
        "held_out_accuracy_by_objective": held.by_objective, "held_out_accuracy_by_kind": held.by_kind,
        "held_out_pairs": held.pairs,
        "pair_construction": recipe.pair_construction.value, "trainable_parameters": trainable,
        "loss_type": list(recipe.loss_type), "beta": recipe.beta, "lr": recipe.lr, "epochs": recipe.epochs,
        "objectives": {o: sum(r["objective"] == o for r in train) for o in ("helpfulness", "safety", "feedback")},
        "wall_s": train_wall_s, "stopped_by_time_budget": budget.stopped_early,
        "resumed_from_step": resumed_step(resume),
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
