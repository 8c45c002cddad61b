"""`chatstack eval model`: evaluate a model, or compare a candidate with a baseline (A/B)."""

from __future__ import annotations

from pathlib import Path

from chatstack import project

METRICS = ("perplexity", "preference", "reader", "judge")  # kept light: parsing must not import torch


def register(subparsers) -> None:
    """Add `model` to the `chatstack eval` sub-commands."""
    p = subparsers.add_parser("model", help="perplexity, DPO preference metrics, reader eval, LLM-as-judge; A/B "
                                            "with --baseline (docs/training.md)")
    p.add_argument("--candidate", type=Path, required=True, help="model folder to evaluate")
    p.add_argument("--baseline", type=Path, help="model folder to compare against (A/B report and verdict)")
    p.add_argument("--out", type=Path, default=project.ROOT / "build" / "eval", help="report.json + report.md here")
    p.add_argument("--metrics", default=",".join(METRICS), help=f"comma-separated subset of {','.join(METRICS)}")
    p.add_argument("--held-out", type=Path, nargs="*", default=[], help="text files/folders (default: docs/*.md)")
    p.add_argument("--reference", type=Path, help="reference model of the DPO reward (default: each model's parent)")
    p.add_argument("--pairs", type=int, help="held-out preference pairs (default: the DPO recipe's eval_pairs)")
    p.add_argument("--beta", type=float, help="β of the implicit DPO reward (default: the DPO recipe's)")
    p.add_argument("--reader-count", type=int, default=60, help="held-out reader conversations")
    p.add_argument("--reader-decoding", type=Path, metavar="CONFIG",
                   help="answer the reader conversations as this deployment TOML decodes (its frequency penalty, "
                        "quote-bound decoding); default: plain greedy")
    p.add_argument("--questions", type=Path, help="judge question set, JSONL (default: data/judge/questions.jsonl)")
    p.add_argument("--question-limit", type=int, help="use only the first N judge questions")
    p.add_argument("--max-new-tokens", type=int, default=128, help="answer length for the judge questions")
    p.add_argument("--candidate-url", help="ask the candidate's judge answers of a running chatstack server (gRPC)")
    p.add_argument("--judge-url", help="OpenAI-compatible base URL of the judge, e.g. http://host:8000/v1")
    p.add_argument("--judge-model", help="model name sent to --judge-url")
    p.add_argument("--judge-triton", help="a chatstack Triton server as the judge, gRPC host:port")
    p.set_defaults(func=run_command)


def _settings(args):
    from chatstack.evaluation.preference import PreferenceSet
    from chatstack.evaluation.run import EvalSettings

    overrides = {k: v for k, v in (("pairs", args.pairs), ("beta", args.beta)) if v is not None}
    extra = {"questions": args.questions} if args.questions else {}
    if args.reader_decoding is not None:
        extra["reader_decoding"] = _deployment_decoding(args.reader_decoding)
    return EvalSettings(
        metrics=tuple(m.strip() for m in args.metrics.split(",") if m.strip()), held_out=tuple(args.held_out),
        preference=PreferenceSet(**overrides), reference=args.reference, reader_count=args.reader_count,
        question_limit=args.question_limit, max_new_tokens=args.max_new_tokens, **extra,
    )


def _deployment_decoding(path: Path):
    """The generation section of a deployment TOML (its errors are ValueErrors naming the key)."""
    from chatstack.config import load_config

    if not path.is_file():
        raise ValueError(f"--reader-decoding: no deployment config at {path}")
    try:
        return load_config(path).generation
    except ValueError as exc:
        raise ValueError(f"--reader-decoding {path}: {exc}") from None


def _judge(args):
    from chatstack.evaluation.judge import OpenAIJudge, TritonJudge

    if args.judge_url and args.judge_triton:
        raise ValueError("give one judge: --judge-url or --judge-triton, not both")
    if args.judge_url:
        return OpenAIJudge(args.judge_url, args.judge_model or "")
    if args.judge_model:
        raise ValueError("--judge-model needs --judge-url")
    return TritonJudge(args.judge_triton) if args.judge_triton else None


def run_command(args) -> int:
    from chatstack.evaluation.answering import ServedAnswerer
    from chatstack.evaluation.run import evaluate, write_report

    try:
        settings, judge = _settings(args), _judge(args)
        answerer = ServedAnswerer(args.candidate_url, args.max_new_tokens) if args.candidate_url else None
        report = evaluate(args.candidate, args.baseline, settings, judge, answerer)
    except ValueError as exc:
        raise SystemExit(f"chatstack eval model: {exc}") from None
    json_path, md_path = write_report(report, args.out)
    print(md_path.read_text(encoding="utf-8"))
    print(f"report: {json_path} and {md_path}")
    return 0
