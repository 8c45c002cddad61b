"""Loading a saved model folder for evaluation, and finding the model it was trained from."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from chatstack import project

# summary files the training stages write; each records the folder it started from
_SUMMARIES = ("dpo_summary.json", "sft_summary.json")


@dataclass(frozen=True)
class LoadedModel:
    path: Path
    model: torch.nn.Module
    tokenizer: object  # a transformers tokenizer

    @property
    def max_positions(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 1024))


def check_model_dir(path: Path, field: str) -> Path:
    """A folder `from_pretrained` can load, or a ValueError naming `field`."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"{field}: {path} is not a saved model folder (no config.json)")
    return path


def load_model(path: Path, field: str = "model") -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = check_model_dir(path, field)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
    return LoadedModel(path, model, tokenizer)


def parent_model(path: Path) -> Path | None:
    """The folder `path` was fine-tuned from (its DPO or SFT summary), if recorded and still there."""
    for name in _SUMMARIES:
        summary = Path(path) / name
        if summary.is_file():
            base = json.loads(summary.read_text(encoding="utf-8")).get("base_model")
            if base:
                base_path = Path(base) if Path(base).is_absolute() else project.ROOT / base
                return base_path if (base_path / "config.json").is_file() else None
    return None


def training_records(path: Path) -> dict[str, dict]:
    """Every `*summary.json` a training stage left in the folder, by file name."""
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(path).glob("*summary.json"))}
