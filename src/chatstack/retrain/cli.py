"""`chatstack retrain`: the weekly retraining without Airflow (or one step of it, for the DAG)."""

from __future__ import annotations

import shlex
from pathlib import Path

from chatstack.retrain.plan import STEP_NAMES, RetrainConfig, retrain_steps

DEFAULTS = RetrainConfig(run_id="defaults")


def register(subparsers) -> None:
    p = subparsers.add_parser("retrain", help="feedback export → DPO → eval vs the served model → register if better")
    p.add_argument("--run-id", required=True, help="names the run folder (Airflow: its run_id)")
    p.add_argument("--step", choices=STEP_NAMES, help="run only this step (the DAG runs one step per task)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--runs-root", type=Path, default=DEFAULTS.runs_root)
    p.add_argument("--name", default=DEFAULTS.model_name, help="registered model name")
    p.add_argument("--baseline", type=Path, default=DEFAULTS.baseline, help="served model folder (A/B baseline)")
    p.add_argument("--recipe", type=Path, default=DEFAULTS.dpo_recipe, help="DPO recipe")
    p.add_argument("--preference-table", default=DEFAULTS.preference_table, help="versioned preference pairs")
    p.add_argument("--feedback-table", default=DEFAULTS.feedback_table, help="versioned feedback export")
    p.add_argument("--set", dest="dpo_overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="DPO recipe override (repeatable)")
    p.add_argument("--eval-args", default="", help="extra flags for `chatstack eval model`, one string")
    p.add_argument("--register-args", default="", help="extra flags for `chatstack register`, one string")
    p.set_defaults(func=cmd_retrain)


def cmd_retrain(args) -> int:
    from chatstack.retrain.runner import StepFailed, run_steps

    cfg = RetrainConfig(run_id=args.run_id, runs_root=args.runs_root, model_name=args.name, baseline=args.baseline,
                        dpo_recipe=args.recipe, preference_table=args.preference_table,
                        feedback_table=args.feedback_table, deployment_config=Path(args.config),
                        dpo_overrides=tuple(args.dpo_overrides), eval_args=tuple(shlex.split(args.eval_args)),
                        register_args=tuple(shlex.split(args.register_args)))
    steps = retrain_steps(cfg)
    if args.dry_run:
        for step in steps:
            if args.step in (None, step.name):
                print(f"# {step.name}\n{shlex.join(step.argv)}")
        return 0
    try:
        for record in run_steps(steps, cfg.run_dir, only=args.step):
            print(f"{record['step']}: ok in {record['wall_s']} s (log: {record['log']})")
    except StepFailed as exc:
        print(exc)
        return 1
    print(f"run folder: {cfg.run_dir}")
    return 0
