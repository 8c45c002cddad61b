"""Pretraining checkpoints: the whole state of a run, so one stopped mid-way continues to the same floats."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from chatstack.recipes import recipe_key

if TYPE_CHECKING:
    from chatstack.model.pretrain import PretrainConfig

logger = logging.getLogger(__name__)

# fields that may change between attempts without making a checkpoint stale
FREE_FIELDS = ("output_dir", "time_budget_s", "checkpoint_every")


def checkpoint_path(cfg: PretrainConfig) -> Path:
    return cfg.output_dir.with_name(cfg.output_dir.name + ".checkpoint.pt")


def save_checkpoint(path: Path, cfg: PretrainConfig, model, optimizer, progress: dict) -> None:
    """The run's whole state, written to a sibling and renamed over `path` (a kill mid-write leaves the last one)."""
    staging = path.with_name(path.name + ".tmp")
    torch.save({"recipe": recipe_key(cfg, FREE_FIELDS), "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), **progress}, staging)
    staging.replace(path)


def load_checkpoint(path: Path, cfg: PretrainConfig) -> dict | None:
    """The saved state when `path` holds one of this recipe; None (and the stale file removed) otherwise."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, weights_only=False)
    except Exception as exc:  # a torn or foreign file: start over rather than fail the pipeline
        logger.warning("ignoring unreadable checkpoint %s: %s", path, exc)
        state = None
    if state is None or state.get("recipe") != recipe_key(cfg, FREE_FIELDS):
        if state is not None:
            logger.warning("ignoring checkpoint %s: written by another recipe", path)
        path.unlink(missing_ok=True)
        return None
    return state
