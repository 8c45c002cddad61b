"""Assemble and validate the served model repository.

Sources: `model_repository/<model>/` (config.pbtxt template + `1/model.py`
adapter) and `ensemble/<name>/config.pbtxt`. Output: a folder Triton can serve,
plus `deployment.json` (the resolved deployment config the adapters read).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from chatstack.config import DeploymentConfig
from chatstack.repository.templates import TemplateError, render


@dataclass(frozen=True)
class SourceLayout:
    """Where the templates live in a chatstack checkout."""

    models: Path
    ensembles: Path

    @classmethod
    def from_root(cls, root: Path) -> "SourceLayout":
        return cls(models=root / "model_repository", ensembles=root / "ensemble")


def template_values(cfg: DeploymentConfig, deployment_json: Path) -> dict[str, str]:
    return {
        "deployment_json": str(deployment_json),
        "max_batch_size": str(cfg.serving.max_batch_size),
        "preprocess_instances": str(cfg.serving.preprocess_instances),
        "generate_instances": str(cfg.serving.generate_instances),
    }


def _model_dirs(layout: SourceLayout) -> list[Path]:
    dirs = [p for root in (layout.models, layout.ensembles) for p in sorted(root.iterdir()) if p.is_dir()]
    names = [d.name for d in dirs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise TemplateError(f"model name(s) defined twice: {duplicates}")
    return dirs


def assemble_repository(layout: SourceLayout, cfg: DeploymentConfig, out_dir: Path) -> Path:
    """Render every template into `out_dir/model_repository`; returns that folder."""
    repository = out_dir / "model_repository"
    deployment_json = (out_dir / "deployment.json").resolve()
    values = template_values(cfg, deployment_json)
    configs: dict[str, model_config_pb2.ModelConfig] = {}
    staging = out_dir / "model_repository.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    for source in _model_dirs(layout):
        template = source / "config.pbtxt"
        text = render(template.read_text(), values, source=str(template))
        configs[source.name] = parse_config(text, str(template))
        target = staging / source.name
        (target / "1").mkdir(parents=True)
        (target / "config.pbtxt").write_text(text)
        for file in (source / "1").glob("*.py") if (source / "1").is_dir() else []:
            shutil.copy2(file, target / "1" / file.name)
    validate_ensembles(configs)
    out_dir.mkdir(parents=True, exist_ok=True)
    deployment_json.write_text(cfg.to_json())
    shutil.rmtree(repository, ignore_errors=True)
    staging.rename(repository)
    return repository


def parse_config(text: str, source: str) -> model_config_pb2.ModelConfig:
    config = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise TemplateError(f"{source}: not a valid Triton model config: {exc}") from exc
    return config


def validate_ensembles(configs: dict[str, model_config_pb2.ModelConfig]) -> None:
    """Check each ensemble step names real models, inputs and outputs, in order."""
    for name, config in configs.items():
        if config.platform != "ensemble":
            continue
        available = {t.name for t in config.input}
        for step in config.ensemble_scheduling.step:
            model = configs.get(step.model_name)
            if model is None:
                raise TemplateError(f"ensemble {name}: step model {step.model_name!r} is not in the repository")
            _check_step(name, step, model, available)
            available |= set(step.output_map.values())
        missing = {t.name for t in config.output} - available
        if missing:
            raise TemplateError(f"ensemble {name}: output(s) {sorted(missing)} are produced by no step")


def _check_step(ensemble: str, step, model: model_config_pb2.ModelConfig, available: set[str]) -> None:
    model_inputs = {t.name: t for t in model.input}
    for key, source in step.input_map.items():
        if key not in model_inputs:
            raise TemplateError(f"ensemble {ensemble}: {step.model_name} has no input {key!r}")
        if source not in available:
            raise TemplateError(f"ensemble {ensemble}: {step.model_name}.{key} reads {source!r}, produced by no earlier step")
    unmapped = [n for n, t in model_inputs.items() if n not in step.input_map and not t.optional]
    if unmapped:
        raise TemplateError(f"ensemble {ensemble}: required input(s) {unmapped} of {step.model_name} are not mapped")
    outputs = {t.name for t in model.output}
    for key in step.output_map:
        if key not in outputs:
            raise TemplateError(f"ensemble {ensemble}: {step.model_name} has no output {key!r}")
