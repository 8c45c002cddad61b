"""`chatstack` command line: train-demo, build, serve, demo, chat, bench."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
from pathlib import Path

from chatstack import project
from chatstack.config import DeploymentConfig, load_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _config(args) -> DeploymentConfig:
    return load_config(Path(args.config))


def _ports(args, cfg: DeploymentConfig):
    from chatstack.serving.server import ServerPorts

    s = cfg.serving
    return ServerPorts(grpc=args.grpc_port or s.grpc_port, http=args.http_port or s.http_port,
                       metrics=args.metrics_port or s.metrics_port)


def train_demo(args) -> Path:
    """The demo pipeline (pretrain → SFT → DPO, cached); `--base-only` stops after pretraining.

    Also trains the moderation head once, so Triton's model instances load it instead of
    each training it at start-up.
    """
    from chatstack.alignment.demo import ensure_aligned_demo_model
    from chatstack.model.pretrain import ensure_demo_model
    from chatstack.safety.moderator import Moderator

    Moderator.from_config(_config(args).safety)

    if args.base_only:
        return ensure_demo_model(project.ARTIFACTS / "demo-model", time_budget_s=args.time_budget_s,
                                 recipe=project.ROOT / "training" / "recipes" / "demo_pretrain.yaml")
    return ensure_aligned_demo_model(project.ROOT, pretrain_budget_s=args.time_budget_s, reader=args.reader)


def cmd_train_demo(args) -> int:
    print(f"demo model ready: {train_demo(args)}")
    return 0


def build_repository(args, cfg: DeploymentConfig) -> Path:
    from chatstack.repository.assemble import SourceLayout, assemble_repository

    if not (Path(cfg.model.dir) / "config.json").exists():
        raise SystemExit(f"model.dir {cfg.model.dir} holds no model; run `chatstack train-demo` first")
    return assemble_repository(SourceLayout.from_root(project.ROOT), cfg, Path(args.out))


def cmd_build(args) -> int:
    repository = build_repository(args, _config(args))
    print(f"served model repository: {repository}")
    return 0


def start_server(args, cfg: DeploymentConfig):
    from chatstack.serving.server import ServerStartError, TritonServer

    repository = build_repository(args, cfg)
    server = TritonServer(repository, _ports(args, cfg), Path(args.out))
    try:
        server.start(timeout_s=args.ready_timeout_s)
    except ServerStartError as exc:
        raise SystemExit(f"Triton failed to start:\n{exc}") from None
    return server


def cmd_serve(args) -> int:
    server = start_server(args, _config(args))
    print(f"Triton ready: gRPC {server.grpc_url}, HTTP 127.0.0.1:{server.ports.http}, "
          f"metrics 127.0.0.1:{server.ports.metrics}/metrics (log: {server.log_path})", flush=True)

    def stop(signum, _frame):
        print(f"signal {signum}: stopping Triton", flush=True)
        server.request_stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = server.wait()
    print(f"Triton exited with code {code}", flush=True)
    return 0 if server.stop_requested and code in (0, -signal.SIGTERM) else code


def cmd_demo(args) -> int:
    from chatstack.client import ChatOptions
    from chatstack.terminal import run_chat_loop

    cfg = _config(args)
    model_dir = train_demo(args)  # the demo always serves the model it just made (or found cached)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, dir=str(model_dir)))
    server = start_server(args, cfg)
    try:
        return run_chat_loop(server.grpc_url, once=args.once, options=ChatOptions(session_id=args.session))
    finally:
        server.stop()


def cmd_chat(args) -> int:
    from chatstack.client import ChatOptions
    from chatstack.terminal import run_chat_loop

    return run_chat_loop(args.url, once=args.once, options=ChatOptions(session_id=args.session))


def cmd_bench(args) -> int:
    if args.suite == "serving":
        from chatstack.bench import serving

        serving.main(_config(args), Path(args.out), args.requests, args.concurrency, args.max_tokens)
        return 0
    if args.suite == "load":
        from chatstack.loadtest import cli as load_cli

        return load_cli.run(args, _config(args))
    if args.suite == "engine":
        from chatstack.bench import engine

        engine.main(args.engine_args)
        return 0
    from chatstack.bench import ensemble_overhead

    ensemble_overhead.main(_config(args), Path(args.out), args.iterations)
    return 0


def cmd_feedback_export(args) -> int:
    from chatstack.feedback.pairs import preference_pairs
    from chatstack.datasets import DatasetKind, VersionedTable
    from chatstack.feedback.store import FeedbackStore, dump_jsonl

    rated = FeedbackStore(_config(args).sessions.db_path).rated_answers()
    pairs = preference_pairs(rated)
    count = dump_jsonl([p.to_record() for p in pairs], Path(args.out))
    version = VersionedTable(args.table, DatasetKind.PREFERENCES).write(
        [{"split": "train", **p.to_record()} for p in pairs], {"stage": "feedback export", "rated_answers": len(rated)})
    print(f"{count} preference pairs from {len(rated)} rated answers -> {args.out}; "
          f"dataset {version.uri} version {version.version}")
    return 0


def cmd_curate(args) -> int:
    from chatstack.curation.pipeline import CurationConfig, CurationReport, SourceDocument, curate, read_jsonl, write_jsonl
    from chatstack.datasets import DatasetKind, VersionedTable
    from chatstack.model.corpus import titled_documents

    if args.input:
        documents = read_jsonl(Path(args.input))
    else:
        documents = (SourceDocument(d.title, d.text) for d in titled_documents())
    report = CurationReport()
    if args.recipe:
        from chatstack.recipes import load_recipe

        config = CurationConfig.from_dict(load_recipe(Path(args.recipe), args.overrides))
    else:
        config = CurationConfig()
    written = write_jsonl(curate(documents, config, report), Path(args.out))
    Path(args.out).with_suffix(".report.json").write_text(report.to_json())
    version = VersionedTable(args.table, DatasetKind.CORPUS).write(
        ({"id": d.doc_id, "text": d.text} for d in read_jsonl(Path(args.out))),
        {"stage": "curate", "seen": report.seen, "kept": report.kept, "removed": json.dumps(dict(report.removed))})
    print(f"curated corpus: dataset {version.uri} version {version.version} ({version.content_hash})")
    print(f"kept {written} of {report.seen} documents; removed: {dict(report.removed)}; "
          f"PII spans scrubbed: {report.pii_spans_scrubbed} (report: {Path(args.out).with_suffix('.report.json')})")
    return 0


def cmd_tokenizer_report(args) -> int:
    """Compression of a trained tokenizer on text it was not trained on: the project's own docs."""
    from chatstack.model.tokenizer import bytes_per_token
    from chatstack.text.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(Path(args.model_dir))
    held_out = {p.name: p.read_text(encoding="utf-8") for p in sorted((project.ROOT / "docs").glob("*.md"))}
    for name, text in held_out.items():
        print(f"{name}: {bytes_per_token(tokenizer, [text]):.2f} bytes/token")
    print(f"all held-out docs: {bytes_per_token(tokenizer, held_out.values()):.2f} bytes/token "
          f"(vocabulary {len(tokenizer)})")
    return 0


def _server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=str(project.BUILD_DIR), help="where the served repository is written")
    p.add_argument("--grpc-port", type=int)
    p.add_argument("--http-port", type=int)
    p.add_argument("--metrics-port", type=int)
    p.add_argument("--ready-timeout-s", type=float, default=300.0)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="chatstack", description=__doc__)
    root.add_argument("--config", default=str(project.DEFAULT_CONFIG), help="deployment TOML")
    sub = root.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train-demo", help="train the demo model once (cached): pretrain → SFT → DPO")
    p.add_argument("--time-budget-s", type=float, help="pretraining budget (default: the recipe's)")
    p.add_argument("--base-only", action="store_true", help="stop after pretraining")
    p.add_argument("--reader", action="store_true",
                   help="also train from the copying base of training/recipes/reader_pretrain.yaml (~40 min more "
                        "on two cores) and serve it if it reads better (docs/training.md)")
    p.set_defaults(func=cmd_train_demo)
    p = sub.add_parser("build", help="render the served model repository")
    p.add_argument("--out", default=str(project.BUILD_DIR))
    p.set_defaults(func=cmd_build)
    p = sub.add_parser("serve", help="build and run Triton until SIGINT/SIGTERM")
    _server_args(p)
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("demo", help="train if needed, serve, and chat")
    _server_args(p)
    p.add_argument("--time-budget-s", type=float, help="pretraining budget (default: the recipe's)")
    p.add_argument("--base-only", action="store_true", help="serve the pretrained base, skip SFT/DPO")
    p.add_argument("--reader", action="store_true", help="as for train-demo: also train the reader from its copying base")
    p.add_argument("--once", help="ask one question, print the streamed answer, exit")
    p.add_argument("--session", help="session id for multi-turn history")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("chat", help="chat with a running server")
    p.add_argument("--url", default="127.0.0.1:8001")
    p.add_argument("--once")
    p.add_argument("--session")
    p.set_defaults(func=cmd_chat)
    p = sub.add_parser("tokenizer-report", help="bytes per token of a model's tokenizer on held-out text (docs/)")
    p.add_argument("--model-dir", default=str(project.ARTIFACTS / "demo-model"))
    p.set_defaults(func=cmd_tokenizer_report)
    p = sub.add_parser("curate", help="dedup (MinHash-LSH), heuristics and PII scrubbing of a corpus")
    p.add_argument("--input", help="JSONL with {id, text}; default: the bundled demo corpus")
    p.add_argument("--recipe", help="curation recipe (YAML), e.g. training/recipes/demo_curate.yaml: "
                   "heuristics, dedup, PII and the small-LM quality filter; default: built-in settings")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field, e.g. quality.drop_top_fraction=0.05")
    p.add_argument("--out", default=str(project.ARTIFACTS / "curated" / "corpus.jsonl"))
    p.add_argument("--table", default=str(project.ARTIFACTS / "datasets" / "curated_corpus"),
                   help="versioned Delta table (path or s3:// URI) the kept documents are committed to")
    p.set_defaults(func=cmd_curate)
    p = sub.add_parser("feedback", help="user feedback")
    feedback = p.add_subparsers(dest="feedback_command", required=True)
    p = feedback.add_parser("export", help="preference pairs (TRL DPO format, JSONL) from rated answers")
    p.add_argument("--out", default=str(project.ARTIFACTS / "feedback" / "preference_pairs.jsonl"))
    p.add_argument("--table", default=str(project.ARTIFACTS / "datasets" / "feedback_pairs"),
                   help="versioned Delta table (path or s3:// URI) the pairs are committed to")
    p.set_defaults(func=cmd_feedback_export)
    p = sub.add_parser("bench", help="benchmarks (see docs/benchmarks.md)")
    p.add_argument("suite", choices=["ensemble", "engine", "serving", "load"],  # engine: further flags go to bench.engine
                   help="ensemble: TTFT overhead of the chat ensemble at concurrency 1; engine: native engine vs HF; "
                        "serving: HF vs native behind the ensemble under concurrent load; "
                        "load: Locust step search for the largest rate with P99 TTFT under budget")
    p.add_argument("--requests", type=int, default=48, help="serving: requests per backend")
    p.add_argument("--concurrency", type=int, default=8, help="serving: requests in flight")
    p.add_argument("--max-tokens", type=int, default=32, help="serving: tokens per answer")
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--out", default=str(project.ROOT / "build" / "bench"))
    from chatstack.loadtest import cli as load_cli

    load_cli.add_arguments(p)
    p.set_defaults(func=cmd_bench)
    from chatstack.datasets import cli as datasets_cli
    from chatstack.rag.cli import register as register_rag
    from chatstack.rag.cli import register_eval_suite as register_rag_eval
    from chatstack.retrain import cli as retrain_cli
    from chatstack.safety import evaluate as safety_eval

    register_rag(sub)  # ingest, eval-rag, bench-rag
    datasets_cli.register(sub)  # datasets history
    retrain_cli.register(sub)  # retrain: feedback export → DPO → eval → register if better
    p = sub.add_parser("eval", help="evaluations on held-out sets")
    suites = p.add_subparsers(dest="suite", required=True)
    safety_eval.register(suites)
    register_rag_eval(suites)  # eval rag (= eval-rag)
    from chatstack.evaluation import cli as model_eval
    from chatstack.registry import cli as registry_cli

    model_eval.register(suites)  # eval model
    registry_cli.register(sub)  # register, registry list|serve
    return root


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    root = parser()
    args, extra = root.parse_known_args(argv)
    if getattr(args, "suite", None) == "engine" and args.command == "bench":
        args.engine_args = extra  # passed on to python -m chatstack.bench.engine
    elif extra:
        root.error(f"unrecognized arguments: {' '.join(extra)}")
    return args.func(args) or 0
