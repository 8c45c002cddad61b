"""Command-line flags of `chatstack bench load` (kept here so cli.py only wires them in).

Importing this module must stay cheap: Locust (and its gevent monkey-patching) runs in
child processes only, never in the `chatstack` process.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _rates(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(r) for r in text.split(",") if r.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rates must be comma-separated numbers, got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("load (Locust step search; see loadtest/README.md)")
    group.add_argument("--rates", type=_rates, default=(0.25, 0.5, 1.0, 2.0, 4.0, 8.0),
                       help="load: offered QPS per step, increasing (default 0.25,0.5,1,2,4,8)")
    group.add_argument("--step-s", type=float, default=30.0, help="load: Locust --run-time per rate")
    group.add_argument("--pacing-s", type=float, default=4.0, help="load: users = rate x pacing-s")
    group.add_argument("--ttft-p99-ms", type=float, default=200.0, help="load: P99 TTFT budget")
    group.add_argument("--bisections", type=int, default=1, help="load: extra steps between last pass and first miss")
    group.add_argument("--protocol", choices=["grpc", "sse"], default="grpc", help="load: Locust user class")
    group.add_argument("--omp-threads", type=int, help="load: OMP_NUM_THREADS for the served stack (default: the environment's, else 1)")


def run(args, deployment) -> int:
    from chatstack.loadtest.bench import LoadBenchConfig, free_loopback_ports, main

    try:
        cfg = LoadBenchConfig(rates_qps=args.rates, step_s=args.step_s, pacing_s=args.pacing_s,
                              ttft_p99_budget_ms=args.ttft_p99_ms, bisections=args.bisections, protocol=args.protocol,
                              omp_threads=args.omp_threads)
    except ValueError as exc:
        raise SystemExit(f"bench load: {exc}") from None
    main(deployment, cfg, Path(args.out) / "load", free_loopback_ports())
    return 0
