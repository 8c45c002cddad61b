"""The weekly retraining DAG, loaded by Airflow's own DagBag in the separate Airflow venv."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from chatstack import project

AIRFLOW_PYTHON = project.ROOT / ".venv-airflow" / "bin" / "python"
CHECK = project.ROOT / "orchestration" / "check_dags.py"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not AIRFLOW_PYTHON.exists(), reason="no Airflow venv: run `make airflow-venv` first"),
]


def load_dags(tmp_path, folder=None) -> tuple[int, dict]:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    args = [str(AIRFLOW_PYTHON), str(CHECK)] + ([str(folder)] if folder else [])
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    lines = done.stdout.splitlines()  # Airflow logs to stdout before the report
    assert "{" in lines, done.stdout + done.stderr
    return done.returncode, json.loads("\n".join(lines[lines.index("{"):]))


def test_dagbag_loads_the_weekly_retrain_dag_with_its_task_chain(tmp_path):
    code, report = load_dags(tmp_path)
    assert code == 0 and report["import_errors"] == {}
    dag = report["dags"]["chatstack_weekly_retrain"]
    assert dag["schedule"] == "0 3 * * 1" and dag["catchup"] is False and dag["max_active_runs"] == 1
    chain = {name: task["downstream"] for name, task in dag["tasks"].items()}
    assert chain == {"feedback_export": ["dpo"], "dpo": ["eval"], "eval": ["register"], "register": []}
    for name, task in dag["tasks"].items():
        assert task["retries"] == 2 and task["timeout_s"]
        assert f"--step {name.replace('_', '-')}" in task["command"] and "--run-id" in task["command"]


def test_dagbag_reports_a_broken_dag_file(tmp_path):
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "broken_dag.py").write_text("from airflow.sdk import DAG\nimport chatstack_missing_module\n")
    code, report = load_dags(tmp_path, folder)
    assert code == 1 and "chatstack_missing_module" in json.dumps(report["import_errors"])
