"""`chatstack retrain`: the commands it plans fit the real parsers, steps run in order and stop on failure."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from chatstack import cli, project
from chatstack.alignment.dpo import DPORecipe
from chatstack.datasets import DatasetKind, VersionedTable
from chatstack.feedback.store import FeedbackStore
from chatstack.recipes import load_recipe
from chatstack.retrain.plan import STEP_NAMES, RetrainConfig, Step, retrain_steps
from chatstack.retrain.runner import StepFailed, run_steps
from chatstack.text.chat_template import Message
from tests.unit.test_alignment import tiny_model  # noqa: F401  (fixture: a 1-layer Llama + tokenizer)


def align_script():
    spec = importlib.util.spec_from_file_location("align", project.ROOT / "training" / "align.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def config(tmp_path) -> RetrainConfig:
    deploy = tmp_path / "deploy.toml"
    deploy.write_text(project.DEFAULT_CONFIG.read_text().replace('db_path = "../artifacts/sessions.sqlite"',
                                                                 f'db_path = "{tmp_path / "sessions.sqlite"}"'))
    return RetrainConfig(run_id="scheduled__2026-11-23T03:00:00+00:00", runs_root=tmp_path / "runs",
                         baseline=tmp_path / "served", preference_table=str(tmp_path / "pairs"),
                         feedback_table=str(tmp_path / "feedback"), deployment_config=deploy,
                         dpo_overrides=("train_pairs=16",), register_args=("--registry", str(tmp_path / "registry")))


def test_steps_are_the_four_cli_commands_in_order(config):
    steps = retrain_steps(config)
    assert tuple(s.name for s in steps) == STEP_NAMES
    assert config.run_dir.name == "scheduled__2026-11-23T03_00_00_00_00"
    assert steps[0].argv[1:3] == ("-m", "chatstack")  # chatstack subcommands: parsed by the real CLI parser
    export = cli.parser().parse_args(list(steps[0].argv[3:]))
    assert export.func is cli.cmd_feedback_export and export.table == config.feedback_table
    register = cli.parser().parse_args(list(steps[3].argv[3:]))
    assert register.if_better and register.model == config.candidate and register.name == "demo-chat"
    assert str(register.report) == str(config.eval_dir / "report.json")
    evaluation = cli.parser().parse_args(list(steps[2].argv[3:]))
    assert (evaluation.candidate, evaluation.baseline) == (config.candidate, config.baseline)
    assert evaluation.reader_decoding == config.deployment_config  # the candidate answers as it would be served


def test_dpo_command_builds_a_valid_recipe_from_the_served_model(config):
    dpo = retrain_steps(config)[1]
    align = align_script()
    args = align.parse_args(list(dpo.argv[2:]))
    recipe = DPORecipe.from_dict(load_recipe(args.recipe, args.overrides))
    assert recipe.base_model == config.baseline and recipe.output_dir == config.candidate
    assert recipe.dataset.uri == config.preference_table and recipe.feedback_dataset.uri == config.feedback_table
    assert recipe.feedback_pairs is None and recipe.train_pairs == 16


@pytest.mark.parametrize("field, value, message", [
    ("run_id", "::", "run_id must contain letters or digits"),
    ("model_name", "demo chat", "model_name must be"),
    ("dpo_overrides", ("beta",), "dpo_overrides must be KEY=VALUE"),
])
def test_bad_config_values_are_rejected(field, value, message):
    with pytest.raises(ValueError, match=message):
        RetrainConfig(**{"run_id": "r1", field: value})


def test_feedback_export_step_runs_for_real_and_is_recorded(config, tmp_path):
    store = FeedbackStore(tmp_path / "sessions.sqlite")
    store.record_response("a" * 32, "s1", [Message("user", "What is a set?")], "A fruit.")
    store.record_feedback("a" * 32, -1, "An unordered collection of unique items.")
    (record,) = run_steps(retrain_steps(config), config.run_dir, only="feedback-export")
    assert record["exit_code"] == 0
    (pair,) = VersionedTable(config.feedback_table, DatasetKind.PREFERENCES).read()
    assert pair["rejected"] == [{"role": "assistant", "content": "A fruit."}]
    assert json.loads((config.run_dir / "retrain.json").read_text())["steps"][0]["step"] == "feedback-export"


def test_a_failing_step_stops_the_run_naming_the_step(tmp_path):
    steps = [Step("first", (sys.executable, "-c", "print('fine')")),
             Step("broken", (sys.executable, "-c", "import sys; print('no model here'); sys.exit(3)")),
             Step("never", (sys.executable, "-c", "open('ran', 'w')"))]
    with pytest.raises(StepFailed, match=r"(?s)'broken' exited with 3.*no model here"):
        run_steps(steps, tmp_path / "run")
    history = json.loads((tmp_path / "run" / "retrain.json").read_text())["steps"]
    assert [(s["step"], s["exit_code"]) for s in history] == [("first", 0), ("broken", 3)]
    with pytest.raises(ValueError, match="step must be one of"):
        run_steps(steps, tmp_path / "run", only="deploy")


@pytest.mark.slow
def test_whole_retrain_run_on_a_tiny_model(config, tiny_model, tmp_path):  # noqa: F811
    """feedback export → DPO → eval → register, each a real subprocess, on a 1-layer model."""
    import dataclasses
    import shutil

    shutil.copytree(tiny_model, config.baseline)
    (tmp_path / "held_out.txt").write_text("A list is a mutable sequence. A tuple is an immutable sequence. " * 20)
    store = FeedbackStore(tmp_path / "sessions.sqlite")
    store.record_response("a" * 32, "s1", [Message("user", "What is a set?")], "A fruit.")
    store.record_feedback("a" * 32, -1, "An unordered collection of unique items.")
    cfg = dataclasses.replace(
        config, dpo_overrides=("train_pairs=8", "eval_pairs=4", "batch_size=4", "time_budget_s=60"),
        eval_args=("--metrics", "perplexity,preference", "--pairs", "4", "--held-out", str(tmp_path / "held_out.txt")),
        register_args=("--registry", str(tmp_path / "registry"), "--export-root", str(tmp_path / "served")))
    records = run_steps(retrain_steps(cfg), cfg.run_dir)
    assert [r["step"] for r in records] == list(STEP_NAMES) and all(r["exit_code"] == 0 for r in records)
    lineage = json.loads((cfg.candidate / "lineage.json").read_text())["datasets"]
    assert lineage["feedback"]["rows"] == 1 and lineage["preferences"]["rows"] == 12
    report = json.loads((cfg.eval_dir / "report.json").read_text())
    assert isinstance(report["verdict"]["candidate_better"], bool)
    registered = (tmp_path / "registry").exists() and any((tmp_path / "registry").rglob("*"))
    assert registered == report["verdict"]["candidate_better"]
