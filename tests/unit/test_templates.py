"""Template rendering and assembly of the served model repository from the real templates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from chatstack.config import DeploymentConfig, ServingSection, load_resolved_json
from chatstack.project import ROOT
from chatstack.repository.assemble import SourceLayout, assemble_repository
from chatstack.repository.templates import TemplateError, placeholders, render

SOURCE = SourceLayout.from_root(ROOT)


# --- render -------------------------------------------------------------------------------


def test_render_fills_every_placeholder():
    text = "name: ${name}\ncount: ${count} and ${count} again"
    assert render(text, {"name": "chat", "count": "4"}) == "name: chat\ncount: 4 and 4 again"


def test_render_leaves_text_without_placeholders_alone():
    text = "dollar $5, braces {x} and $name are not placeholders"
    assert placeholders(text) == set()
    assert render(text, {}) == text


def test_render_error_names_the_file_and_every_unfilled_placeholder():
    with pytest.raises(TemplateError) as info:
        render("${a} ${b} ${c}", {"b": "1"}, source="models/x/config.pbtxt")
    message = str(info.value)
    assert message.startswith("models/x/config.pbtxt")
    assert "${a}" in message and "${c}" in message
    assert "${b}" not in message.split(";")[0]  # the filled one is not reported missing


@pytest.mark.parametrize("bad", ["${}", "${1abc}", "${has space}", "${a-b}"])
def test_render_rejects_malformed_placeholders(bad):
    with pytest.raises(TemplateError, match="malformed") as info:
        render(f"x: {bad}", {"a": "1"}, source="t.pbtxt")
    assert "t.pbtxt" in str(info.value)
    assert bad in str(info.value)


def test_render_rejects_a_value_that_introduces_a_placeholder():
    with pytest.raises(TemplateError, match="new placeholder"):
        render("x: ${a}", {"a": "${b}"})


def test_template_error_is_a_value_error():
    assert issubclass(TemplateError, ValueError)


# --- assemble the real templates -----------------------------------------------------------


def source_model_names() -> list[str]:
    return sorted(p.name for root in (SOURCE.models, SOURCE.ensembles) for p in root.iterdir() if p.is_dir())


def test_assembles_every_real_template(tmp_path):
    cfg = DeploymentConfig()
    repository = assemble_repository(SOURCE, cfg, tmp_path)

    assert repository == tmp_path / "model_repository"
    assert sorted(p.name for p in repository.iterdir()) == source_model_names()
    assert "chat" in source_model_names() and "generate" in source_model_names()
    for model in repository.iterdir():
        config = (model / "config.pbtxt").read_text()
        assert "${" not in config, model.name
        assert f'name: "{model.name}"' in config
        assert (model / "1").is_dir()
        source_dir = SOURCE.models / model.name
        if source_dir.is_dir():
            assert (model / "1" / "model.py").read_bytes() == (source_dir / "1" / "model.py").read_bytes()
    assert not (tmp_path / "model_repository.tmp").exists()


def test_assembled_configs_carry_deployment_values(tmp_path):
    cfg = DeploymentConfig(serving=ServingSection(max_batch_size=3, preprocess_instances=5, generate_instances=2))
    repository = assemble_repository(SOURCE, cfg, tmp_path)
    deployment_json = tmp_path / "deployment.json"

    assert json.loads(deployment_json.read_text()) == json.loads(cfg.to_json())
    assert load_resolved_json(deployment_json) == cfg
    preprocess = (repository / "preprocess" / "config.pbtxt").read_text()
    assert "max_batch_size: 3" in preprocess
    assert "count: 5" in preprocess
    assert "count: 2" in (repository / "generate" / "config.pbtxt").read_text()
    assert f'string_value: "{deployment_json.resolve()}"' in preprocess


def test_reassembling_replaces_the_previous_repository(tmp_path):
    assemble_repository(SOURCE, DeploymentConfig(), tmp_path)
    stale = tmp_path / "model_repository" / "stale_model"
    stale.mkdir()
    assemble_repository(SOURCE, DeploymentConfig(), tmp_path)
    assert not stale.exists()


# --- broken copies of the real templates ---------------------------------------------------


@pytest.fixture
def layout(tmp_path) -> SourceLayout:
    """A private copy of the real template tree, safe to break."""
    root = tmp_path / "src"
    shutil.copytree(SOURCE.models, root / "model_repository")
    shutil.copytree(SOURCE.ensembles, root / "ensemble")
    return SourceLayout.from_root(root)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} should occur once in {path}"
    path.write_text(text.replace(old, new))


def assemble_error(layout: SourceLayout, tmp_path: Path) -> str:
    with pytest.raises(TemplateError) as info:
        assemble_repository(layout, DeploymentConfig(), tmp_path / "out")
    return str(info.value)


def test_the_untouched_copy_assembles(layout, tmp_path):
    assert assemble_repository(layout, DeploymentConfig(), tmp_path / "out").is_dir()


def test_step_reading_a_tensor_nobody_produces(layout, tmp_path):
    edit(layout.ensembles / "chat" / "config.pbtxt",
         'input_map { key: "text" value: "_text" }', 'input_map { key: "text" value: "_nowhere" }')
    message = assemble_error(layout, tmp_path)
    assert "_nowhere" in message and "postprocess.text" in message and "chat" in message


def test_step_reading_a_tensor_produced_only_by_a_later_step(layout, tmp_path):
    edit(layout.ensembles / "chat" / "config.pbtxt",
         'input_map { key: "query_context" value: "_retrieval_context" }',
         'input_map { key: "query_context" value: "_text" }')
    message = assemble_error(layout, tmp_path)
    assert "retrieve.query" in message and "_text" in message


def test_step_mapping_an_input_the_model_does_not_have(layout, tmp_path):
    edit(layout.ensembles / "chat" / "config.pbtxt",
         'input_map { key: "passages" value: "_passages" }',
         'input_map { key: "passages" value: "_passages" }\n      input_map { key: "no_such_input" value: "seed" }')
    message = assemble_error(layout, tmp_path)
    assert "generate" in message and "no_such_input" in message


def test_step_mapping_an_output_the_model_does_not_have(layout, tmp_path):
    edit(layout.ensembles / "chat" / "config.pbtxt",
         'output_map { key: "query" value: "_query" }',
         'output_map { key: "query" value: "_query" }\n      output_map { key: "no_such_output" value: "_x" }')
    message = assemble_error(layout, tmp_path)
    assert "preprocess" in message and "no_such_output" in message


def test_required_model_input_left_unmapped(layout, tmp_path):
    edit(layout.ensembles / "chat" / "config.pbtxt",
         'input_map { key: "stream_key" value: "_stream_key" }\n', "")
    message = assemble_error(layout, tmp_path)
    assert "stream_key" in message and "postprocess" in message


def test_unknown_model_name(layout, tmp_path):
    edit(layout.ensembles / "chat" / "config.pbtxt", 'model_name: "retrieve"', 'model_name: "retriever"')
    message = assemble_error(layout, tmp_path)
    assert "'retriever'" in message and "not in the repository" in message


def test_ensemble_output_produced_by_no_step(layout, tmp_path):
    edit(layout.ensembles / "chat" / "config.pbtxt",
         'output_map { key: "blocked" value: "blocked" }', 'output_map { key: "blocked" value: "_other" }')
    message = assemble_error(layout, tmp_path)
    assert "blocked" in message and "produced by no step" in message


def test_invalid_pbtxt_syntax(layout, tmp_path):
    template = layout.models / "retrieve" / "config.pbtxt"
    edit(template, 'output [ { name: "passages"', 'output [ { nmae: "passages"')
    message = assemble_error(layout, tmp_path)
    assert str(template) in message and "not a valid Triton model config" in message


def test_unfilled_placeholder(layout, tmp_path):
    template = layout.models / "moderate_input" / "config.pbtxt"
    edit(template, "count: 1 kind", "count: ${moderate_instances} kind")
    message = assemble_error(layout, tmp_path)
    assert str(template) in message and "${moderate_instances}" in message


def test_model_defined_twice(layout, tmp_path):
    shutil.copytree(layout.models / "retrieve", layout.ensembles / "retrieve")
    assert "retrieve" in assemble_error(layout, tmp_path)


def test_a_failed_assembly_keeps_the_previous_repository(layout, tmp_path):
    out = tmp_path / "out"
    assemble_repository(layout, DeploymentConfig(), out)
    before = (out / "model_repository" / "chat" / "config.pbtxt").read_text()
    edit(layout.ensembles / "chat" / "config.pbtxt", 'model_name: "retrieve"', 'model_name: "retriever"')
    with pytest.raises(TemplateError):
        assemble_repository(layout, DeploymentConfig(serving=ServingSection(max_batch_size=2)), out)
    assert (out / "model_repository" / "chat" / "config.pbtxt").read_text() == before
    assert json.loads((out / "deployment.json").read_text())["serving"]["max_batch_size"] == 8
