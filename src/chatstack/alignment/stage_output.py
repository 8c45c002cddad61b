"""Write a trained stage atomically: model, tokenizer and summary to `<out>.partial`, then rename."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def partial_dir(output_dir: Path) -> Path:
    return output_dir.with_name(output_dir.name + ".partial")


def save_stage(output_dir: Path, model, tokenizer, base_model: Path, summary_name: str, summary: dict) -> Path:
    """Save into `<output_dir>.partial` (the trainer's scratch folder inside it is dropped) and rename."""
    work = partial_dir(output_dir)
    shutil.rmtree(work / "trainer", ignore_errors=True)
    model.save_pretrained(str(work))
    tokenizer.save_pretrained(str(work))
    if (base_model / "generation_config.json").exists():
        shutil.copy2(base_model / "generation_config.json", work / "generation_config.json")
    (work / summary_name).write_text(json.dumps(summary, indent=2))
    shutil.rmtree(output_dir, ignore_errors=True)
    work.rename(output_dir)
    return output_dir
