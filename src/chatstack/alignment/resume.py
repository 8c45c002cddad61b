"""Trainer checkpoints an interrupted SFT or DPO run continues from.

A run saves the Trainer's state (weights, optimizer, scheduler, RNG, data position) every `checkpoint_steps`
under `<output_dir>.partial/trainer/`; started again with the same recipe it resumes from the latest
one. A checkpoint written under another recipe is removed, never resumed.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from chatstack.recipes import recipe_key

logger = logging.getLogger(__name__)

RECIPE_FILE = "recipe.json"
# fields that may change between attempts without making a checkpoint stale
FREE_FIELDS = ("output_dir", "time_budget_s", "checkpoint_steps")


def checkpoint_arguments(checkpoint_steps: int) -> dict:
    """TrainingArguments for saving every `checkpoint_steps` steps (0: never), keeping the latest only."""
    if not checkpoint_steps:
        return {"save_strategy": "no"}
    return {"save_strategy": "steps", "save_steps": checkpoint_steps, "save_total_limit": 1}


def resume_point(trainer_dir: Path, recipe) -> str | None:
    """The latest checkpoint under `trainer_dir` written for `recipe`, or None; marks the folder as this
    recipe's (a folder of another recipe is cleared first)."""
    from transformers.trainer_utils import get_last_checkpoint

    marker, key = trainer_dir / RECIPE_FILE, recipe_key(recipe, FREE_FIELDS)
    last = None
    if marker.is_file() and marker.read_text(encoding="utf-8") == key:
        last = get_last_checkpoint(str(trainer_dir))
    elif trainer_dir.exists():
        logger.warning("removing checkpoints in %s: written by another recipe", trainer_dir)
        shutil.rmtree(trainer_dir)
    trainer_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(key, encoding="utf-8")
    if last is not None:
        logger.info("resuming from %s", last)
    return last


def resumed_step(checkpoint: str | None) -> int:
    """The step a `checkpoint-N` folder was saved at (0 for None)."""
    return 0 if checkpoint is None else int(Path(checkpoint).name.rsplit("-", 1)[1])
