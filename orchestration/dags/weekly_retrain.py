"""Weekly retraining of the served chat model, as an Airflow DAG.

    feedback_export ─▶ dpo ─▶ eval ─▶ register

Each task runs one step of `chatstack retrain` (the same commands run by hand or end to
end without Airflow): export users' ratings as a new version of the feedback-pairs table,
DPO from the served model on the preference pairs plus every feedback pair, A/B evaluate the
candidate against the served model, and register (and serve) it only if the report says it
is better. All tasks of a run share one folder named after Airflow's run_id.

Imports only Airflow and the standard library: the workers call the chatstack CLI, so the
DAG processor needs no chatstack environment. Set CHATSTACK_BIN (default: `chatstack` on
PATH) and CHATSTACK_HOME (default: the checkout holding this file) on the workers.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

CHATSTACK = os.environ.get("CHATSTACK_BIN", "chatstack")
PROJECT_DIR = os.environ.get("CHATSTACK_HOME", str(Path(__file__).resolve().parents[2]))
# (task id, `chatstack retrain --step`, time limit): DPO is the long one
STEPS = (
    ("feedback_export", "feedback-export", timedelta(minutes=30)),
    ("dpo", "dpo", timedelta(hours=12)),
    ("eval", "eval", timedelta(hours=3)),
    ("register", "register", timedelta(minutes=30)),
)

with DAG(
    dag_id="chatstack_weekly_retrain",
    description="feedback export → DPO → A/B eval vs the served model → register if better",
    schedule="0 3 * * 1",  # Mondays 03:00 UTC
    start_date=datetime(2026, 1, 5),
    catchup=False,
    max_active_runs=1,  # two runs must not train and promote at the same time
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10), "retry_exponential_backoff": True},
    tags=["chatstack", "training"],
) as dag:
    previous = None
    for task_id, step, limit in STEPS:
        task = BashOperator(
            task_id=task_id,
            bash_command=f'{CHATSTACK} retrain --run-id "{{{{ run_id }}}}" --step {step}',
            cwd=PROJECT_DIR,
            env={"HF_HUB_OFFLINE": "1"},
            append_env=True,
            execution_timeout=limit,
        )
        if previous is not None:
            previous >> task
        previous = task
