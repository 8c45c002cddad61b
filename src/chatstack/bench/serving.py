"""Serving throughput through the chat ensemble: HF baseline vs native engine, same run.

Each backend gets its own Triton server on the same deployment config; `requests`
chat requests are sent `concurrency` at a time over gRPC streams (greedy, fixed output
length), and time to first token per request plus generated tokens per second overall
are reported, with the native/HF ratio.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from chatstack import project
from chatstack.bench.stats import Summary
from chatstack.client import ChatClient, ChatOptions
from chatstack.config import DeploymentConfig
from chatstack.repository.assemble import SourceLayout, assemble_repository
from chatstack.serving.server import ServerPorts, TritonServer

QUESTIONS = ["What is a list comprehension?", "Explain the with statement.", "What does yield do?",
             "How do I open a file?", "What is a decorator?", "What is a tuple?"]


@dataclasses.dataclass(frozen=True)
class ServingResult:
    backend: str
    ttft: Summary
    tokens_per_s: float


def drive(url: str, requests: int, concurrency: int, max_tokens: int) -> tuple[list[float], float]:
    options = ChatOptions(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)

    def one(i: int) -> float:
        return ChatClient(url, timeout_s=600).complete(QUESTIONS[i % len(QUESTIONS)], options).time_to_first_token_s

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        ttfts = list(pool.map(one, range(requests)))
    return ttfts, requests * max_tokens / (time.perf_counter() - started)


def measure(cfg: DeploymentConfig, backend: str, out: Path, requests: int, concurrency: int,
            max_tokens: int) -> ServingResult:
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, backend=backend))
    s = cfg.serving
    repository = assemble_repository(SourceLayout.from_root(project.ROOT), cfg, out / backend)
    with TritonServer(repository, ServerPorts(s.grpc_port, s.http_port, s.metrics_port), out / backend) as server:
        drive(server.grpc_url, concurrency, concurrency, max_tokens)  # warm-up round, dropped
        ttfts, rate = drive(server.grpc_url, requests, concurrency, max_tokens)
    return ServingResult(backend, Summary.of(ttfts), rate)


def main(cfg: DeploymentConfig, out: Path, requests: int, concurrency: int, max_tokens: int) -> list[ServingResult]:
    results = [measure(cfg, backend, out, requests, concurrency, max_tokens) for backend in ("hf", "native")]
    print("| backend | requests | concurrency | TTFT p50 ms | TTFT p90 ms | TTFT p99 ms | generated tok/s |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r.backend} | {requests} | {concurrency} | {r.ttft.p50_ms:.1f} | {r.ttft.p90_ms:.1f} | "
              f"{r.ttft.p99_ms:.1f} | {r.tokens_per_s:.1f} |")
    print(f"native / hf throughput: {results[1].tokens_per_s / results[0].tokens_per_s:.2f}x")
    return results
