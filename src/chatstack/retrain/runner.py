"""Run retraining steps in order, each as a subprocess, keeping a record of the run.

`<run_dir>/retrain.json` lists every step run so far with its command, exit code, time
and log file, so a run driven step by step (Airflow tasks) reads the same as one driven
end to end. A failing step stops the run with an error naming the step and its log.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

from chatstack.retrain.plan import Step


class StepFailed(RuntimeError):
    pass


def _record(path: Path, entry: dict) -> None:
    history = json.loads(path.read_text()) if path.exists() else {"steps": []}
    history["steps"].append(entry)
    path.write_text(json.dumps(history, indent=2))


def run_steps(steps: list[Step], run_dir: Path, only: str | None = None) -> list[dict]:
    """Run `steps` (or just the one named `only`); returns their records."""
    if only is not None and only not in [s.name for s in steps]:
        raise ValueError(f"step must be one of {[s.name for s in steps]}, got {only!r}")
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    records = []
    for step in steps:
        if only is not None and step.name != only:
            continue
        log = run_dir / f"{step.name}.log"
        started = time.monotonic()
        with log.open("w") as out:
            code = subprocess.run(step.argv, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
        entry = {"step": step.name, "command": shlex.join(step.argv), "exit_code": code,
                 "wall_s": round(time.monotonic() - started, 1), "log": str(log),
                 "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        _record(run_dir / "retrain.json", entry)
        records.append(entry)
        if code != 0:
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
            raise StepFailed(f"retrain step {step.name!r} exited with {code} (log: {log}):\n{tail}")
    return records
