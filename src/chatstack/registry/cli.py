"""`chatstack register` (add a model version, optionally only if an A/B report says it is better)
and `chatstack registry list|serve`."""

from __future__ import annotations

import json
from pathlib import Path

from chatstack import project

DEFAULT_ROOT = project.ARTIFACTS / "registry"


def register(subparsers) -> None:
    p = subparsers.add_parser("register", help="register a model folder as the next version of NAME and serve it")
    p.add_argument("--model", type=Path, required=True, help="saved model folder")
    p.add_argument("--name", required=True, help="registered model name, e.g. demo-chat")
    p.add_argument("--report", type=Path, help="report.json (or its folder) from `chatstack eval model --baseline`")
    p.add_argument("--if-better", action="store_true", help="register only if the report's verdict says the "
                                                           "candidate beats the baseline")
    p.add_argument("--no-serve", action="store_true", help="register without making it the served version")
    _common(p)
    p.set_defaults(func=cmd_register)
    p = subparsers.add_parser("registry", help="registered model versions")
    sub = p.add_subparsers(dest="registry_command", required=True)
    q = sub.add_parser("list", help="every name, version and which one is served")
    _common(q)
    q.set_defaults(func=cmd_list)
    q = sub.add_parser("serve", help="make an already registered version the served one (roll forward or back)")
    q.add_argument("--name", required=True)
    q.add_argument("--version", type=int, required=True)
    _common(q)
    q.set_defaults(func=cmd_serve)


def _common(p) -> None:
    p.add_argument("--registry", type=Path, default=DEFAULT_ROOT, help="registry root folder")
    p.add_argument("--export-root", type=Path, default=project.ARTIFACTS,
                   help="the served version is copied to EXPORT_ROOT/NAME, the folder deploy configs name")


def _registry(args):
    from chatstack.registry.model_registry import ModelRegistry

    return ModelRegistry(args.registry, args.export_root)


def evaluation_record(report_path: Path) -> dict:
    """The figures of a report worth keeping with a version: the candidate's metrics and the verdict."""
    raw = json.loads(report_path.read_text(encoding="utf-8"))
    candidate = {k: v for k, v in raw["candidate"].items() if k not in ("answers",)}
    if candidate.get("judge"):
        candidate["judge"] = {k: v for k, v in candidate["judge"].items() if k != "grades"}
    baseline = raw.get("baseline") or {}
    return {"report": str(report_path), "created": raw.get("created"), "candidate": candidate,
            "baseline": baseline.get("model"), "pairwise": raw.get("pairwise"), "verdict": raw.get("verdict")}


def decide_registration(model: Path, report: Path | None, if_better: bool) -> tuple[bool, str]:
    """(register?, why); checks that the report is about `model`."""
    from chatstack.evaluation.report import read_verdict

    if report is None:
        if if_better:
            raise ValueError("--if-better needs --report (from `chatstack eval model --baseline`)")
        return True, "registered without a comparison"
    candidate, verdict = read_verdict(report)
    if candidate.resolve() != model.resolve():
        raise ValueError(f"report: it evaluates {candidate}, not --model {model}")
    if if_better and not verdict.candidate_better:
        return False, f"not better than the baseline: {verdict.reason}"
    return True, verdict.reason


def cmd_register(args) -> int:
    report = args.report / "report.json" if args.report and args.report.is_dir() else args.report
    try:
        accepted, why = decide_registration(args.model, report, args.if_better)
        if not accepted:
            print(f"not registered: {why}")
            return 0
        evaluation = evaluation_record(report) if report else {}
        record = _registry(args).register(args.model, args.name, evaluation, note=why, serve=not args.no_serve)
    except ValueError as exc:
        raise SystemExit(f"chatstack register: {exc}") from None
    served = "" if args.no_serve else f", served (exported to {args.export_root / args.name})"
    print(f"registered {record.name} version {record.version} from {record.source}{served}: {why}")
    return 0


def cmd_list(args) -> int:
    registry = _registry(args)
    if not registry.names():
        print(f"no models registered in {registry.root}")
    for name in registry.names():
        served = registry.served_version(name)
        print(f"{name} (served: {served if served is not None else 'none'})")
        for version in registry.versions(name):
            r = registry.registration(name, version)
            verdict = (r.evaluation.get("verdict") or {}).get("reason") or r.note
            print(f"  {'*' if version == served else ' '} v{version}  {r.created}  from {r.source}  {verdict}")
    return 0


def cmd_serve(args) -> int:
    try:
        folder = _registry(args).promote(args.name, args.version)
    except ValueError as exc:
        raise SystemExit(f"chatstack registry serve: {exc}") from None
    print(f"{args.name} now serves version {args.version} ({folder})")
    return 0
