"""Supervised fine-tuning with TRL: full or LoRA, loss on assistant tokens only.

The chat template is the served one (it marks assistant turns with
`{% generation %}`), so what the model learns is exactly what it will be asked.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from chatstack.alignment.compute import ComputeSettings
from chatstack.alignment.reader_data import ReaderMix
from chatstack.datasets import DatasetRef
from chatstack.recipes import check_checkpoint_interval, check_ranges, recipe_from_dict
from chatstack.text.chat_template import Message

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SFTRecipe:
    base_model: Path
    output_dir: Path
    train_conversations: int = 1500
    eval_conversations: int = 100
    max_length: int = 1024
    batch_size: int = 8
    lr: float = 1e-3
    epochs: float = 1.0
    time_budget_s: float = 240.0
    checkpoint_steps: int = 50  # Trainer checkpoints to resume an interrupted run from (0: none)
    lora_rank: int = 0  # 0: full fine-tuning; > 0: LoRA adapters merged into the saved model
    seed: int = 0
    # batch conversations of like length (transformers' LengthGroupedSampler): short ones (refusals, no-passage
    # questions) then cost a short batch each instead of padding beside a multi-passage one
    group_by_length: bool = False
    mix: ReaderMix = ReaderMix()
    dataset: DatasetRef | None = None  # versioned conversation set, optionally pinned (versioned_sets.py)
    compute: ComputeSettings = ComputeSettings()  # device, precision, checkpointing, accumulation

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_model", Path(self.base_model))
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        object.__setattr__(self, "dataset", DatasetRef.coerce(self.dataset))
        check_ranges(self, ("train_conversations", "eval_conversations", "max_length", "batch_size"),
                     ("lr", "epochs", "time_budget_s"))
        if self.lora_rank < 0:
            raise ValueError(f"lora_rank must be >= 0, got {self.lora_rank}")
        if not isinstance(self.group_by_length, bool):
            raise ValueError(f"group_by_length must be true or false, got {self.group_by_length!r}")
        check_checkpoint_interval("checkpoint_steps", self.checkpoint_steps)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "SFTRecipe":
        return recipe_from_dict(cls, raw, {"mix": ReaderMix, "compute": ComputeSettings}, ("lr", "epochs", "time_budget_s"))


def as_records(conversations: list[list[Message]]) -> list[dict]:
    return [{"messages": [{"role": m.role, "content": m.content} for m in c]} for c in conversations]


def causal_lm_loss(outputs, labels, num_items_in_batch=None):
    """Next-token cross-entropy over the labelled (assistant) tokens, from full logits.

    TRL's default fused, chunked log-prob kernel is meant for GPUs with huge vocabularies and runs far slower on CPU.
    """
    logits = outputs.logits[:, :-1].float()  # (B, T-1, vocab)
    targets = labels[:, 1:]  # (B, T-1)
    total = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                                              ignore_index=-100, reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else (targets != -100).sum()
    return total / count


def backbone_and_head(model):
    """The decoder stack and LM head of a plain or PEFT-wrapped causal LM on CPU; None for anything else
    (a DDP/FSDP/DeepSpeed wrapper must run its own forward for its hooks, and GPUs have TRL's kernels)."""
    from transformers import PreTrainedModel

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not isinstance(base, PreTrainedModel) or base.device.type != "cpu" or base.base_model is base:
        return None
    return base.base_model, base.get_output_embeddings()


def reader_sft_trainer():
    """An `SFTTrainer` whose loss comes from one forward pass. (Handed to TRL as `compute_loss_func`, the loss made
    TRL run a second, gradient-free forward each step for its entropy and accuracy metrics: a third more compute.)

    On CPU the LM head runs only at the positions that predict an assistant token (`fused_loss`): the passages and
    questions that make up most of each conversation need no logits. Logs the token accuracy from the same logits."""
    from trl import SFTTrainer

    from chatstack.model.fused_loss import linear_cross_entropy, shifted_targets

    class ReaderSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs["labels"]
            features = {k: v for k, v in inputs.items() if k != "labels"}
            parts = None if return_outputs else backbone_and_head(model)
            if parts is not None:
                backbone, head = parts
                hidden = backbone(**features, use_cache=False).last_hidden_state  # (B, T, H)
                rows, targets = shifted_targets(hidden, labels)
                total, right = linear_cross_entropy(rows, head.weight, targets)
                loss = total / (num_items_in_batch if num_items_in_batch is not None else max(len(targets), 1))
                labelled, outputs = torch.tensor(len(targets)), None
            else:
                outputs = model(**features, use_cache=False)
                loss = causal_lm_loss(outputs, labels, num_items_in_batch)
                with torch.no_grad():
                    targets = labels[:, 1:]
                    kept = targets != -100
                    right = ((outputs.logits[:, :-1].argmax(-1) == targets) & kept).sum()
                    labelled = kept.sum()
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # num_items_in_batch counts every rank's tokens
            counts = self.accelerator.gather_for_metrics(torch.stack([right, labelled.to(right.device)]).view(1, 2))
            right_total, total_count = counts.sum(dim=0).tolist()
            mode = "train" if model.training else "eval"
            self._metrics[mode]["mean_token_accuracy"].append(right_total / total_count if total_count else 0.0)
            return (loss, outputs) if return_outputs else loss

    return ReaderSFTTrainer


def _lora_config(rank: int):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])


def main(recipe: SFTRecipe) -> dict:
    """Fine-tune `base_model`; save the merged model to `output_dir`; return the summary."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig

    from chatstack.alignment.chat_loss import assistant_token_loss
    from chatstack.alignment.resume import checkpoint_arguments, resume_point, resumed_step
    from chatstack.alignment.time_budget import TimeBudget
    from chatstack.alignment.versioned_sets import sft_conversations
    from chatstack.datasets import write_lineage

    tokenizer = AutoTokenizer.from_pretrained(str(recipe.base_model))
    train, held_out, used = sft_conversations(recipe)
    base_loss = assistant_token_loss(AutoModelForCausalLM.from_pretrained(str(recipe.base_model)), tokenizer,
                                     held_out, recipe.max_length)
    work = recipe.output_dir.with_name(recipe.output_dir.name + ".partial")
    args = SFTConfig(
        output_dir=str(work / "trainer"), assistant_only_loss=True, max_length=recipe.max_length,
        per_device_train_batch_size=recipe.batch_size, learning_rate=recipe.lr, num_train_epochs=recipe.epochs,
        lr_scheduler_type="cosine", warmup_steps=10, logging_steps=10, report_to=[],
        **checkpoint_arguments(recipe.checkpoint_steps), seed=recipe.seed, dataloader_num_workers=0,
        **recipe.compute.trainer_kwargs(),
        train_sampling_strategy="group_by_length" if recipe.group_by_length else "random",
    )
    budget = TimeBudget(recipe.time_budget_s)
    resume = resume_point(work / "trainer", recipe)  # before the Trainer creates its output folder
    trainer = reader_sft_trainer()(
        model=str(recipe.base_model), args=args, train_dataset=Dataset.from_list(as_records(train)),
        processing_class=tokenizer, callbacks=[budget],
        peft_config=_lora_config(recipe.lora_rank) if recipe.lora_rank else None,
    )
    started = time.monotonic()
    result = trainer.train(resume_from_checkpoint=resume)
    model = trainer.model.merge_and_unload() if recipe.lora_rank else trainer.model
    tuned_loss = assistant_token_loss(model, tokenizer, held_out, recipe.max_length)
    summary = {
        "base_model": str(recipe.base_model), "steps": result.global_step, "train_loss": result.training_loss,
        "held_out_assistant_loss_base": base_loss, "held_out_assistant_loss_sft": tuned_loss,
        "wall_s": round(time.monotonic() - started, 1), "stopped_by_time_budget": budget.stopped_early,
        "lora_rank": recipe.lora_rank, "train_conversations": len(train), "resumed_from_step": resumed_step(resume),
    }
    shutil.rmtree(work / "trainer", ignore_errors=True)
    model.save_pretrained(str(work))
    tokenizer.save_pretrained(str(work))
    if (recipe.base_model / "generation_config.json").exists():
        shutil.copy2(recipe.base_model / "generation_config.json", work / "generation_config.json")
    (work / "sft_summary.json").write_text(json.dumps(summary, indent=2))
    write_lineage(work, "sft", used)
    shutil.rmtree(recipe.output_dir, ignore_errors=True)
    work.rename(recipe.output_dir)
    logger.info("SFT done: %s", summary)
    return summary
