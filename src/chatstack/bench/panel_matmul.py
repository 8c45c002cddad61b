"""Microbenchmark of the one-call decode step's panel matmul against oneDNN's prepacked matmul.

    python -m chatstack.bench.panel_matmul --rows 1 2 4 8 16 32 64 128

Runs a model's projections (the 26.7 M benchmark model's by default: eight layers of 512 -> 768, 512 -> 512,
512 -> 2816 and 1408 -> 512, then the 512 -> 8192 LM head; every layer's weights distinct, so they come from
memory as in a decode step) for `rows` rows through both, taking turns, float32; prints the best of `--repeats`
rounds of each, GFLOP/s and the ratio. The panel matmul runs on one thread, oneDNN on `--threads` (default 1).
This is what `EngineConfig.decode_rows_max_seqs` rests on: at one torch thread, decode-only steps of up to that
many sequences take the panels.
"""

from __future__ import annotations

import argparse
import time

import torch

from chatstack.bench.workload import torch_threads
from chatstack.engine.cpu_kernels import decode_step_kernel
from chatstack.engine.panel_layout import panels
from chatstack.engine.quant import PackedDense


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--qkv", type=int, default=768, help="the QKV projection's output width")
    parser.add_argument("--intermediate", type=int, default=1408)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch (oneDNN) threads; the panels take one")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of two passes each; the best round counts")
    args = parser.parse_args(argv)
    if min(args.rows + [args.hidden, args.qkv, args.intermediate, args.vocab, args.layers, args.repeats, args.threads]) < 1:
        parser.error("sizes, --rows and --repeats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    with torch_threads(args.threads), torch.inference_mode():
        return compare(args)


def compare(args: argparse.Namespace) -> str:
    kernel = decode_step_kernel()
    if kernel is None or not PackedDense.applies(torch.zeros(0), float32=True):
        raise SystemExit("needs the C kernels (a C compiler) and torch built with oneDNN")
    h = args.hidden
    shapes = [(h, args.qkv), (h, h), (h, 2 * args.intermediate), (args.intermediate, h)] * args.layers
    shapes.append((h, args.vocab))
    generator = torch.Generator().manual_seed(0)
    weights = [torch.randn(n, k, generator=generator) * 0.02 for k, n in shapes]  # (out, in), as checkpoints hold
    onednn = [PackedDense(w) for w in weights]
    panel_copies = [panels(w.T.contiguous(), torch.empty(w.numel())) for w in weights]
    flops_per_row = sum(2 * k * n for k, n in shapes)
    lines = [f"projections: {len(shapes)} ({sum(k * n for k, n in shapes) / 1e6:.1f} M weights, "
             f"{sum(k * n for k, n in shapes) * 4 / 2**20:.0f} MiB float32), oneDNN on {torch.get_num_threads()} threads, the panels on one",
             "", "| rows | panels ms | panels GFLOP/s | oneDNN ms | oneDNN GFLOP/s | panels ÷ oneDNN speed | max abs diff |",
             "|---|---|---|---|---|---|---|"]
    for rows in args.rows:
        xs = [torch.randn(rows, k, generator=generator) for k, _ in shapes]
        ours = lambda: [kernel.matmul(x, w, n) for x, w, (_, n) in zip(xs, panel_copies, shapes)]  # noqa: E731
        theirs = lambda: [p(x) for x, p in zip(xs, onednn)]  # noqa: E731
        diff = max(float((a - b).abs().max()) for a, b in zip(ours(), theirs()))  # also the first, set-up calls
        best = {"panels": float("inf"), "onednn": float("inf")}
        for _ in range(args.repeats):
            for name, run in (("panels", ours), ("onednn", theirs)):
                start = time.perf_counter()
                run()
                run()
                best[name] = min(best[name], (time.perf_counter() - start) / 2)
        gflops = {name: rows * flops_per_row / seconds / 1e9 for name, seconds in best.items()}
        lines.append(f"| {rows} | {best['panels'] * 1e3:.2f} | {gflops['panels']:.1f} | {best['onednn'] * 1e3:.2f} | "
                     f"{gflops['onednn']:.1f} | {best['onednn'] / best['panels']:.2f}× | {diff:.1e} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(main())
