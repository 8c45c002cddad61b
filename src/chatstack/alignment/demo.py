"""The demo model pipeline: pretrain → SFT → DPO → register the better reader, cached in artifacts/.

Each stage runs only if its output folder is missing, so `make demo` trains once and
a crashed run resumes at the stage that did not finish (stages write to a `.partial`
folder and rename it when complete).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

from chatstack.model.pretrain import ensure_demo_model, is_saved_model
from chatstack.recipes import load_recipe

logger = logging.getLogger(__name__)


def register_best(candidates: list[Path], target: Path) -> dict:
    """Copy the candidate that reads best (reader evaluation) to `target`; later ones win ties."""
    from chatstack.alignment.reader_eval import evaluate_reader

    scores = {str(c): dataclasses.asdict(evaluate_reader(c)) for c in candidates}
    best = max(reversed(candidates), key=lambda c: scores[str(c)]["cited_correctly"] + scores[str(c)]["said_not_covered"])
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(best, staging)
    record = {"registered": str(best), "scores": scores}
    (staging / "registration.json").write_text(json.dumps(record, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    logger.info("registered %s as %s: %s", best, target, scores)
    return record


def ensure_aligned_demo_model(root: Path, pretrain_budget_s: float = 180.0) -> Path:
    """Train whatever stage is missing; register the better of SFT and DPO as `demo-chat`."""
    from chatstack.alignment.dpo import DPORecipe
    from chatstack.alignment.dpo import main as run_dpo
    from chatstack.alignment.sft import SFTRecipe
    from chatstack.alignment.sft import main as run_sft

    recipes = root / "training" / "recipes"
    base = ensure_demo_model(root / "artifacts" / "demo-model", time_budget_s=pretrain_budget_s)
    sft_recipe = SFTRecipe.from_dict(load_recipe(recipes / "demo_sft.yaml") | {
        "base_model": base, "output_dir": root / "artifacts" / "demo-sft"})
    if not is_saved_model(sft_recipe.output_dir):
        logger.info("SFT stage: %s", run_sft(sft_recipe))
    dpo_raw = load_recipe(recipes / "demo_dpo.yaml") | {
        "base_model": sft_recipe.output_dir, "output_dir": root / "artifacts" / "demo-dpo"}
    if dpo_raw.get("feedback_pairs"):
        dpo_raw["feedback_pairs"] = root / dpo_raw["feedback_pairs"]
    dpo_recipe = DPORecipe.from_dict(dpo_raw)
    if not is_saved_model(dpo_recipe.output_dir):
        logger.info("DPO stage: %s", run_dpo(dpo_recipe))
    served = root / "artifacts" / "demo-chat"
    if not is_saved_model(served):
        register_best([sft_recipe.output_dir, dpo_recipe.output_dir], served)
    return served
