"""`chatstack bench load`: serve a deployment, drive it with headless Locust at rising rates,
and find the largest rate whose P99 time to first token stays under the budget.

Each rate is its own bounded Locust run (`--headless -u N -r R --run-time T --csv`):
N users each pace themselves at rate/N requests per second (constant_throughput), so
the offered rate does not depend on the server keeping up; users are spawned over one
pacing period, so requests start evenly from the first second. The search stops at the
first rate that misses the budget, then bisects between it and the last good rate.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from chatstack import project
from chatstack.bench.stats import Summary
from chatstack.config import DeploymentConfig
from chatstack.loadtest.grpc_stream import ChatStream
from chatstack.loadtest.prompts import PromptCursor, PromptMix
from chatstack.loadtest.run_stats import RunStats
from chatstack.loadtest.settings import DEFAULT_PROMPTS
from chatstack.repository.assemble import SourceLayout, assemble_repository
from chatstack.serving.server import ServerPorts, TritonServer

LOCUSTFILE = project.ROOT / "loadtest" / "locustfile.py"
USER_CLASSES = {"grpc": "GrpcChatUser", "sse": "SseChatUser"}


@dataclass(frozen=True)
class LoadBenchConfig:
    rates_qps: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    step_s: float = 30.0
    pacing_s: float = 4.0  # each user starts one request every pacing_s seconds: users = rate * pacing_s
    ttft_p99_budget_ms: float = 200.0
    max_error_rate: float = 0.01
    min_achieved_share: float = 0.9  # a step whose server completes < 90 % of the offered rate failed
    bisections: int = 1
    protocol: str = "grpc"
    prompts: Path = DEFAULT_PROMPTS
    request_timeout_s: float = 30.0
    omp_threads: int | None = None  # OMP_NUM_THREADS for the served stack; None: the environment's, else 1

    def __post_init__(self) -> None:
        if self.omp_threads is not None and not 1 <= self.omp_threads <= 256:
            raise ValueError(f"--omp-threads must be in [1, 256], got {self.omp_threads}")
        if not self.rates_qps or any(r <= 0 for r in self.rates_qps) or list(self.rates_qps) != sorted(self.rates_qps):
            raise ValueError(f"--rates must be increasing positive numbers, got {self.rates_qps}")
        if not 5 <= self.step_s <= 600:
            raise ValueError(f"--step-s must be in [5, 600], got {self.step_s}")
        if not 0.5 <= self.pacing_s <= 60:
            raise ValueError(f"--pacing-s must be in [0.5, 60], got {self.pacing_s}")
        if self.ttft_p99_budget_ms <= 0:
            raise ValueError(f"--ttft-p99-ms must be > 0, got {self.ttft_p99_budget_ms}")
        if not 0 <= self.max_error_rate < 1:
            raise ValueError(f"--max-error-rate must be in [0, 1), got {self.max_error_rate}")
        if not 0 <= self.bisections <= 5:
            raise ValueError(f"--bisections must be in [0, 5], got {self.bisections}")
        if self.protocol not in USER_CLASSES:
            raise ValueError(f"--protocol must be one of {sorted(USER_CLASSES)}, got {self.protocol!r}")

    def users_for(self, rate_qps: float) -> int:
        return max(1, math.ceil(rate_qps * self.pacing_s))


@dataclass(frozen=True)
class StepResult:
    offered_qps: float
    users: int
    stats: RunStats
    passed: bool
    reason: str

    def row(self, alone: Summary) -> str:
        """A table row; `alone` is the concurrency-1 baseline of the same run."""
        total, ttft = self.stats.total, self.stats.ttft
        achieved = total.requests_per_s if total else 0.0
        cells = (f"{ttft.p50_ms:.0f} | {ttft.p90_ms:.0f} | {ttft.p99_ms:.0f} | {ttft.p50_ms / alone.p50_ms:.1f}x"
                 if ttft else "- | - | - | -")
        return (f"| {self.offered_qps:g} | {self.users} | {achieved:.2f} | {total.count if total else 0} | {cells} | "
                f"{(total.p50_ms if total else float('nan')):.0f} | {self.stats.error_rate:.1%} | "
                f"{'yes' if self.passed else 'no: ' + self.reason} |")


TABLE_HEADER = ("| offered QPS | users | achieved QPS | requests | TTFT p50 ms | TTFT p90 ms | TTFT p99 ms | "
                "TTFT p50 / c=1 p50 | latency p50 ms | errors | P99 TTFT < budget |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|")


def judge(stats: RunStats, offered_qps: float, cfg: LoadBenchConfig) -> tuple[bool, str]:
    if stats.total is None or stats.total.count == 0:
        return False, "no request completed"
    if stats.error_rate > cfg.max_error_rate:
        return False, f"error rate {stats.error_rate:.1%}"
    if stats.ttft is None or not stats.ttft.p99_ms < cfg.ttft_p99_budget_ms:
        return False, f"P99 TTFT {stats.ttft.p99_ms if stats.ttft else float('nan'):.0f} ms"
    if stats.total.requests_per_s < cfg.min_achieved_share * offered_qps:
        return False, f"achieved {stats.total.requests_per_s:.2f} of {offered_qps:g} QPS"
    return True, ""


def locust_command(cfg: LoadBenchConfig, rate_qps: float, server: TritonServer, prefix: Path) -> list[str]:
    users = cfg.users_for(rate_qps)
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), USER_CLASSES[cfg.protocol], "--headless",
            "-u", str(users), "-r", f"{max(users / cfg.pacing_s, 1.0):g}", "--run-time", f"{cfg.step_s:g}s",
            "--stop-timeout", f"{cfg.request_timeout_s:g}", "--only-summary",
            "--grpc-url", server.grpc_url, "--host", f"http://127.0.0.1:{server.ports.http}",
            "--target-qps", f"{rate_qps:g}", "--prompts", str(cfg.prompts),
            "--request-timeout-s", f"{cfg.request_timeout_s:g}", "--csv", str(prefix), "--json-file", str(prefix)]


def run_step(cfg: LoadBenchConfig, rate_qps: float, server: TritonServer, out: Path) -> StepResult:
    prefix = out / f"rate-{rate_qps:g}qps"
    command = locust_command(cfg, rate_qps, server, prefix)
    limit_s = cfg.step_s + cfg.pacing_s + cfg.request_timeout_s + 60  # run + spawn + drain + start-up
    with (out / f"rate-{rate_qps:g}qps.log").open("w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=limit_s, check=False)
    if not Path(f"{prefix}.json").exists():
        raise RuntimeError(f"locust exited with {done.returncode} and wrote no stats; see {prefix}.log")
    stats = RunStats.read(prefix, cfg.protocol, cfg.step_s)
    passed, reason = judge(stats, rate_qps, cfg)
    return StepResult(rate_qps, cfg.users_for(rate_qps), stats, passed, reason)


def step_search(cfg: LoadBenchConfig, server: TritonServer, out: Path, alone: Summary) -> list[StepResult]:
    """Rising rates until one fails, then bisect between the last pass and that failure."""
    results: list[StepResult] = []
    for rate in cfg.rates_qps:
        results.append(run_step(cfg, rate, server, out))
        print(results[-1].row(alone), flush=True)
        if not results[-1].passed:
            break
    good = max((r.offered_qps for r in results if r.passed), default=None)
    bad = min((r.offered_qps for r in results if not r.passed), default=None)
    for _ in range(cfg.bisections if good is not None and bad is not None else 0):
        middle = round((good + bad) / 2, 2)
        results.append(run_step(cfg, middle, server, out))
        print(results[-1].row(alone), flush=True)
        good, bad = (middle, bad) if results[-1].passed else (good, middle)
    return results


def baseline(server: TritonServer, prompts: Path, requests: int = 12) -> Summary:
    """TTFT of the same prompt mix one request at a time, measured in the same run as the steps.

    The first three requests warm the models up and are dropped. On a shared machine this
    is the peer that tells contention from load: each step's TTFT is printed against it.
    """
    mix = PromptMix.load(prompts)
    cursor = PromptCursor(mix, random.Random(0))
    stream = ChatStream(server.grpc_url, timeout_s=120)
    ttfts = []
    try:
        for i in range(requests + 3):
            turn = cursor.next_turn()
            measured = stream.ask(turn.text, mix.chat_options(turn.session_id))
            if measured.failure is not None:
                raise RuntimeError(f"baseline request failed: {measured.failure}")
            if i >= 3 and measured.ttft_s is not None:  # a reply the model ended at once has no first token
                ttfts.append(measured.ttft_s)
    finally:
        stream.close()
    if not ttfts:
        raise RuntimeError(f"baseline: none of {requests} replies streamed a token; set ignore_eos: true in {prompts}")
    return Summary.of(ttfts)


def main(deployment: DeploymentConfig, cfg: LoadBenchConfig, out: Path, ports: ServerPorts) -> list[StepResult]:
    out.mkdir(parents=True, exist_ok=True)
    # the load test's multi-turn sessions go to their own store, not the deployment's
    deployment = dataclasses.replace(deployment, sessions=dataclasses.replace(
        deployment.sessions, db_path=str(out / "sessions.sqlite")))
    repository = assemble_repository(SourceLayout.from_root(project.ROOT), deployment, out / "repository")
    if cfg.omp_threads is not None:
        # Triton and its python-backend stubs inherit this process's environment
        os.environ["OMP_NUM_THREADS"] = str(cfg.omp_threads)
    with TritonServer(repository, ports, out) as server:
        alone = baseline(server, cfg.prompts)
        print(f"concurrency-1 baseline (same prompt mix, same run): TTFT p50 {alone.p50_ms:.0f} ms, "
              f"p99 {alone.p99_ms:.0f} ms over {alone.count} requests", flush=True)
        print(f"Triton ready on {server.grpc_url} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}); "
              f"{cfg.protocol} users, {cfg.step_s:g} s per rate, "
              f"P99 TTFT budget {cfg.ttft_p99_budget_ms:g} ms", flush=True)
        print(TABLE_HEADER, flush=True)
        started = time.perf_counter()
        results = step_search(cfg, server, out, alone)
    best = max((r for r in results if r.passed), key=lambda r: r.offered_qps, default=None)
    summary = {"baseline_c1_ttft": dataclasses.asdict(alone), "best_offered_qps": best.offered_qps if best else None,
               "best_achieved_qps": best.stats.total.requests_per_s if best else None,
               "search_s": round(time.perf_counter() - started, 1),
               "steps": [dataclasses.asdict(r) for r in results]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if best is None:
        print(f"no offered rate kept P99 TTFT < {cfg.ttft_p99_budget_ms:g} ms (lowest tried: {cfg.rates_qps[0]:g} QPS)")
    else:
        print(f"largest rate with P99 TTFT < {cfg.ttft_p99_budget_ms:g} ms: {best.offered_qps:g} QPS offered, "
              f"{best.stats.total.requests_per_s:.2f} QPS achieved, TTFT p99 {best.stats.ttft.p99_ms:.0f} ms")
        print(f"instances of this deployment for 5,000 QPS at that rate: {math.ceil(5000 / best.stats.total.requests_per_s):,}")
    print(f"Locust CSV/JSON and logs: {out}")
    return results


def free_loopback_ports() -> ServerPorts:
    """Three ports free on 127.0.0.1 now, so the benchmark's Triton never collides with a running one."""
    sockets = [socket.socket() for _ in range(3)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        grpc, http, metrics = (s.getsockname()[1] for s in sockets)
    finally:
        for s in sockets:
            s.close()
    return ServerPorts(grpc=grpc, http=http, metrics=metrics)
