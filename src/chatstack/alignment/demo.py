"""The demo model pipeline: pretrain → SFT → DPO → register the better reader, cached in artifacts/.

Each stage runs only if its output folder is missing, so `make demo` trains once and
a crashed run resumes at the stage that did not finish (stages write to a `.partial`
folder and rename it when complete). The chosen model is registered as a version of
`demo-chat` in the model registry (artifacts/registry/), which exports the served version
to artifacts/demo-chat, the folder deploy/demo.toml serves.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from chatstack.model.pretrain import is_saved_model
from chatstack.recipes import load_recipe

logger = logging.getLogger(__name__)

SERVED_NAME = "demo-chat"
REGISTRATION_CONVERSATIONS = 180  # ~25 s a candidate on 2 cores; at 60 SFT and DPO came within a conversation


def _registry(artifacts: Path):
    from chatstack.registry.model_registry import ModelRegistry

    return ModelRegistry(artifacts / "registry", export_root=artifacts)


def register_best(candidates: list[Path], artifacts: Path, name: str = SERVED_NAME,
                  serve_if_better: bool = False, passages=None, decoding=None,
                  conversations: int = REGISTRATION_CONVERSATIONS) -> dict:
    """Register the candidate that reads best (reader evaluation) as a version of `name`, served
    unless `serve_if_better` and the served version handled at least as many conversations right.

    `passages`: the SFT `ReaderMix`, whose passage shape (`passages`, `chunk_tokens`, `distractors`,
    `no_passages`, `refusal`, …) the evaluation asks over (None: the default mix): a candidate that
    answers or refuses where nothing was retrieved, or answers an unsafe request, loses those.
    `conversations`: held-out conversations asked of each candidate. `decoding`: the deployment's
    `GenerationSection`, so candidates answer as they will be served (its frequency penalty, quote-bound
    decoding); None: plain greedy decoding.
    Later candidates win ties. Returns the scores, the registered version and whether it is served.
    """
    from chatstack.alignment.reader_data import ReaderMix
    from chatstack.alignment.reader_eval import evaluate_reader

    passages = passages or ReaderMix()
    shape = {"passages": passages.passages, "chunk_tokens": passages.chunk_tokens,
             "chunk_overlap_tokens": passages.chunk_overlap_tokens, "distractors": passages.distractors,
             "no_passages": passages.no_passages, "refusal": passages.refusal}
    reports = {str(c): evaluate_reader(c, count=conversations, **shape, decoding=decoding) for c in candidates}
    scores = {name: dataclasses.asdict(r) | {"handled_right": r.handled_right} for name, r in reports.items()}
    best = max(reversed(candidates), key=lambda c: reports[str(c)].handled_right)
    registry = _registry(artifacts)
    served = _served_handled_right(registry, name) if serve_if_better else None
    serve = served is None or reports[str(best)].handled_right > served
    evaluation = {"reader_scores": scores, "reader_passages": shape,
                  "reader_decoding": _decoding_record(decoding), "reader_conversations": conversations,
                  "rule": "highest share of held-out conversations handled right (cited / declined); later wins ties"}
    record = registry.register(best, name, evaluation, note="best reader of the demo pipeline", serve=serve)
    logger.info("registered %s as %s version %d (%s): %s", best, name, record.version,
                "served" if serve else f"not served: the served version handled {served:.2f} right", scores)
    return {"registered": str(best), "version": record.version, "scores": scores, "served": serve}


def _decoding_record(decoding) -> dict:
    if decoding is None:
        return {"greedy": True, "frequency_penalty": 0.0, "quote_bound": False}
    return {"greedy": True, "frequency_penalty": decoding.default_frequency_penalty,
            "quote_bound": decoding.copy_from_passages, "copy_enter_after": decoding.copy_enter_after}


def deployment_decoding(root: Path):
    """The generation settings of the deployment that serves the demo model (deploy/demo.toml)."""
    from chatstack.config import load_config

    return load_config(root / "deploy" / "demo.toml").generation


def _served_handled_right(registry, name: str) -> float | None:
    """The reader score recorded for the served version of `name` (None when it has none)."""
    version = registry.served_version(name)
    if version is None:
        return None
    record = registry.registration(name, version)
    own = record.evaluation.get("reader_scores", {}).get(record.source, {})
    return own.get("handled_right")


def _registered_from(registry, candidates: list[Path]) -> bool:
    sources = {registry.registration(SERVED_NAME, v).source for v in registry.versions(SERVED_NAME)}
    return any(str(Path(c).resolve()) in sources for c in candidates)


def adopt_unregistered(artifacts: Path, name: str = SERVED_NAME) -> bool:
    """A served folder made before the registry existed becomes version 1 (nothing is retrained)."""
    registry, served = _registry(artifacts), artifacts / name
    if registry.versions(name) or not is_saved_model(served):
        return False
    old = served / "registration.json"
    evaluation = json.loads(old.read_text(encoding="utf-8")) if old.is_file() else {}
    registry.register(served, name, evaluation, note="adopted the folder served before versions were recorded")
    return True


def ensure_aligned_demo_model(root: Path, pretrain_budget_s: float | None = None, reader: bool = False) -> Path:
    """Train whatever stage is missing; register the better of SFT and DPO as `demo-chat`.

    `reader`: start from the copying base of `reader_pretrain.yaml` instead (stages
    `reader-model`, `reader-sft`, `reader-dpo`; ~40 min more on two cores). Its best
    candidate is registered once, and served only if it reads better than the version
    served now.
    """
    from chatstack.alignment.dpo import DPORecipe
    from chatstack.alignment.dpo import main as run_dpo
    from chatstack.alignment.sft import SFTRecipe
    from chatstack.alignment.sft import main as run_sft
    from chatstack.model.pretrain import ensure_demo_model

    artifacts, recipes = root / "artifacts", root / "training" / "recipes"
    prefix = "reader" if reader else "demo"
    adopt_unregistered(artifacts)
    base = ensure_demo_model(artifacts / f"{prefix}-model", time_budget_s=pretrain_budget_s,
                             recipe=recipes / f"{prefix}_pretrain.yaml")
    sft_recipe = SFTRecipe.from_dict(load_recipe(recipes / "demo_sft.yaml") | {
        "base_model": base, "output_dir": artifacts / f"{prefix}-sft"})
    if not is_saved_model(sft_recipe.output_dir):
        logger.info("SFT stage: %s", run_sft(sft_recipe))
    dpo_raw = load_recipe(recipes / "demo_dpo.yaml") | {
        "base_model": sft_recipe.output_dir, "output_dir": artifacts / f"{prefix}-dpo"}
    if dpo_raw.get("feedback_pairs"):
        dpo_raw["feedback_pairs"] = root / dpo_raw["feedback_pairs"]
    dpo_recipe = DPORecipe.from_dict(dpo_raw)
    if not is_saved_model(dpo_recipe.output_dir):
        logger.info("DPO stage: %s", run_dpo(dpo_recipe))
    registry = _registry(artifacts)
    candidates = [sft_recipe.output_dir, dpo_recipe.output_dir]
    decoding = deployment_decoding(root)
    if registry.served_version(SERVED_NAME) is None:
        register_best(candidates, artifacts, passages=sft_recipe.mix, decoding=decoding)
    elif reader and not _registered_from(registry, candidates):
        register_best(candidates, artifacts, serve_if_better=True, passages=sft_recipe.mix, decoding=decoding)
    elif not is_saved_model(artifacts / SERVED_NAME):  # the export was removed: restore the served version
        registry.promote(SERVED_NAME, registry.served_version(SERVED_NAME))
    return artifacts / SERVED_NAME
