"""`chatstack ingest`, `chatstack eval-rag` (= `chatstack eval rag`) and `chatstack bench-rag`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from chatstack.config import RetrievalSection, load_config

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add the retrieval commands to the `chatstack` argument parser's subparsers."""
    p = subparsers.add_parser("ingest", help="chunk, embed and store documents for retrieval")
    p.add_argument("paths", nargs="*", type=Path, help="files or folders (.txt .md .html …)")
    p.add_argument("--demo-corpus", action="store_true", help="also ingest docs/ (less docs/training.md), README.md and Python's topics")
    p.add_argument("--max-tokens", type=int, help="chunk size in embedder tokens (default: retrieval.chunk_tokens)")
    p.add_argument("--overlap-tokens", type=int, help="default: retrieval.chunk_overlap_tokens")
    _store_args(p)
    p.set_defaults(func=cmd_ingest)
    register_eval_suite(subparsers, "eval-rag")
    p = subparsers.add_parser("bench-rag", help="retrieval latency (embed + search) at N synthetic chunks")
    p.add_argument("--chunks", type=int, default=10_000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--out", type=Path, help="Milvus Lite file for the synthetic collection")
    p.add_argument("--reuse", action="store_true", help="reuse the collection a previous run built at --out")
    p.add_argument("--grounding", type=int, metavar="ANSWERS",
                   help="instead: time the grounding check on ANSWERS answers over the ingested index, passage "
                        "sentences embedded per answer vs read from retrieval.sentence_vectors")
    _store_args(p)
    p.set_defaults(func=cmd_bench)


def register_eval_suite(subparsers, name: str = "rag") -> None:
    """`chatstack eval-rag`, and `chatstack eval rag` when given the `eval` sub-commands."""
    p = subparsers.add_parser(name, help="retrieval recall@k, MRR, context precision; answer faithfulness")
    p.add_argument("--qa", type=Path, help="QA set (JSONL); default: data/rag_eval/demo_qa.jsonl")
    p.add_argument("--k", type=int, nargs="+", default=[1, 3, 5, 10])
    p.add_argument("--mode", choices=["dense", "hybrid", "both"], help="default: retrieval.mode")
    p.add_argument("--faithfulness", action="store_true",
                   help="also answer each question with the reader model and score the answers' claims")
    p.add_argument("--model-dir", type=Path, help="reader model for --faithfulness (default: model.dir)")
    p.add_argument("--max-new-tokens", type=int, default=96)
    _store_args(p)
    p.set_defaults(func=cmd_eval)


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--collection", help="collection name (default: retrieval.collection)")
    p.add_argument("--tenant", help="tenant the chunks belong to (default: retrieval.tenant)")
    p.add_argument("--milvus-uri", help="Lite file path or server URI (default: retrieval.milvus_uri)")


def retrieval_config(args) -> RetrievalSection:
    import dataclasses

    cfg = load_config(Path(args.config)).retrieval
    overrides = {name: getattr(args, name, None) for name in ("collection", "tenant", "milvus_uri")}
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v})


def open_embedder(cfg: RetrievalSection, threads: int = 0):
    """The ONNX embedder (`threads` intra-op threads, 0: one per core), exported first if the file is not there yet."""
    from chatstack.rag.embedder import OnnxEmbedder, bundled_model_dir
    from chatstack.rag.onnx_export import export_embedder

    onnx = Path(cfg.embedder_onnx)
    tokenizer_dir = Path(cfg.embedder_tokenizer_dir) if cfg.embedder_tokenizer_dir else None
    if not onnx.is_file():
        log.info("exporting the embedder to %s", onnx)
        export_embedder(tokenizer_dir or bundled_model_dir(), onnx)
    return OnnxEmbedder(onnx, tokenizer_dir, threads=threads)


def _quiet_lite_iterator_noise() -> None:
    """Milvus Lite lacks AllocTimestamp: every query iterator logs a traceback and a warning, then works."""
    import pymilvus  # noqa: F401  (its import configures logging: set levels after it)

    logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
    logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)


def open_ingestor(cfg: RetrievalSection, max_tokens: int | None = None, overlap_tokens: int | None = None):
    """An `Ingestor` into `cfg`'s collection and tenant, chunking at `max_tokens` / `overlap_tokens`
    (None: `cfg`'s chunk sizes), with passage sentences embedded where `cfg.sentence_vectors` names a file."""
    from chatstack.rag.chunking import ChunkingParams
    from chatstack.rag.embedder import token_offsets
    from chatstack.rag.ingest import Ingestor
    from chatstack.rag.sentence_vectors import SentenceVectors
    from chatstack.rag.store import VectorStore

    embedder = open_embedder(cfg)
    tokenizer_dir = Path(cfg.embedder_tokenizer_dir) if cfg.embedder_tokenizer_dir else None
    return Ingestor(VectorStore.open(cfg.milvus_uri, cfg.collection), embedder, token_offsets(tokenizer_dir),
                    ChunkingParams(cfg.chunk_tokens if max_tokens is None else max_tokens,
                                   cfg.chunk_overlap_tokens if overlap_tokens is None else overlap_tokens),
                    tenant=cfg.tenant,
                    sentences=SentenceVectors(Path(cfg.sentence_vectors), embedder.dim) if cfg.sentence_vectors else None)


def cmd_ingest(args) -> int:
    from tqdm import tqdm

    from chatstack.rag.demo_corpus import DEMO_CORPUS_EXCLUDED, demo_corpus_paths
    from chatstack.rag.ingest import discover

    cfg = retrieval_config(args)
    _quiet_lite_iterator_noise()
    paths = list(args.paths) + (demo_corpus_paths() if args.demo_corpus else [])
    if not paths:
        raise SystemExit("ingest: give PATH… or --demo-corpus")
    for path in paths:
        if not path.exists():
            print(f"ingest: {path} does not exist; chunks ingested from it before are removed")
    ingestor = open_ingestor(cfg, args.max_tokens, args.overlap_tokens)
    roots = [discover(p, DEMO_CORPUS_EXCLUDED if args.demo_corpus else ()) for p in paths]
    with tqdm(total=sum(len(r.files) for r in roots), unit="file", desc="ingest") as bar:
        report = ingestor.ingest(roots, progress=lambda source: bar.update(1))
    for path, reason in report.skipped:
        print(f"skipped {path}: {reason}")
    print(f"{cfg.milvus_uri} [{cfg.collection}, tenant {cfg.tenant}]: {report.summary()}")
    return 0


def cmd_eval(args) -> int:
    from chatstack.rag.evaluate import DEFAULT_QA, evaluate, load_qa
    from chatstack.rag.service import MilvusRetriever
    from chatstack.rag.store import VectorStore

    cfg = retrieval_config(args)
    _quiet_lite_iterator_noise()
    items = load_qa(args.qa or DEFAULT_QA)
    store = VectorStore.open(cfg.milvus_uri, cfg.collection, must_exist=True)
    embedder = open_embedder(cfg)
    modes = ["dense", "hybrid"] if args.mode == "both" else [args.mode or cfg.mode]
    reader = _reader(args) if args.faithfulness else None
    for mode in modes:
        retriever = MilvusRetriever(store, embedder, cfg.tenant, score_threshold=-1.0, mode=mode,
                                    memory_max_chunks=cfg.memory_index_max_chunks)
        print(f"retrieval: {mode}")
        print(evaluate(retriever, items, ks=tuple(args.k)).table())
        if reader is not None:
            from chatstack.rag.faithfulness import evaluate_faithfulness

            retriever.score_threshold = cfg.score_threshold  # answer from what serving would pass on
            print(f"faithfulness, top {cfg.top_k} passages above {cfg.score_threshold}:")
            print(evaluate_faithfulness(retriever, items, reader, embedder, cfg.top_k).table())
    store.close()
    return 0


def _reader(args):
    from chatstack.rag.faithfulness import local_reader

    deployment = load_config(Path(args.config))
    if args.max_new_tokens < 1:
        raise SystemExit(f"eval-rag: --max-new-tokens must be >= 1, got {args.max_new_tokens}")
    return local_reader(args.model_dir or Path(deployment.model.dir), deployment.sessions.system_prompt,
                        args.max_new_tokens)


def _bench_grounding(cfg: RetrievalSection, answers: int) -> int:
    from chatstack.rag.bench import run_grounding_benchmark
    from chatstack.rag.sentence_vectors import SentenceVectors
    from chatstack.rag.store import VectorStore

    if answers < 1:
        raise SystemExit(f"bench-rag: --grounding must be >= 1, got {answers}")
    if not cfg.sentence_vectors or not Path(cfg.sentence_vectors).is_file():
        raise SystemExit(f"bench-rag: no sentence-vector file at {cfg.sentence_vectors!r}: run chatstack ingest first")
    embedder = open_embedder(cfg, threads=cfg.embedder_threads)  # as serving runs it
    store = VectorStore.open(cfg.milvus_uri, cfg.collection)
    try:
        cost = run_grounding_benchmark(store, cfg.tenant, embedder,
                                       SentenceVectors(Path(cfg.sentence_vectors), embedder.dim, read_only=True), answers)
    finally:
        store.close()
    print(cost.table())
    return 0


def cmd_bench(args) -> int:
    from chatstack import project
    from chatstack.rag.bench import run_latency_benchmark

    cfg = retrieval_config(args)
    _quiet_lite_iterator_noise()
    if args.grounding is not None:
        return _bench_grounding(cfg, args.grounding)
    out = args.out or project.ROOT / "build" / "bench" / "rag_bench.db"
    print(run_latency_benchmark(open_embedder(cfg), out, args.chunks, args.queries, reuse=args.reuse).table())
    return 0
