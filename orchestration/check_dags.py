"""Load orchestration/dags with Airflow's own DagBag and print what it found, as JSON.

Run with the Airflow venv (`make airflow-venv`): `.venv-airflow/bin/python orchestration/check_dags.py [FOLDER]`
(default FOLDER: orchestration/dags). Exit code 1 when any DAG file fails to import.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def describe(dag) -> dict:
    return {
        "schedule": str(dag.schedule), "catchup": dag.catchup, "max_active_runs": dag.max_active_runs,
        "tasks": {t.task_id: {"downstream": sorted(t.downstream_task_ids), "retries": t.retries,
                              "command": getattr(t, "bash_command", None),
                              "timeout_s": t.execution_timeout.total_seconds() if t.execution_timeout else None}
                  for t in dag.tasks},
    }


def main() -> int:
    from airflow.dag_processing.dagbag import DagBag

    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "dags"
    bag = DagBag(dag_folder=str(folder), safe_mode=False)  # safe_mode would skip files not mentioning "dag"
    report = {"import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
              "dags": {dag_id: describe(dag) for dag_id, dag in bag.dags.items()}}
    print(json.dumps(report, indent=2))
    return 1 if report["import_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
