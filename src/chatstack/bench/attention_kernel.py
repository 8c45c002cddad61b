"""Microbenchmark of the paged-attention C kernel on its own.

    python -m chatstack.bench.attention_kernel --kv-heads 2 --heads 8 --head-dim 64 --dtype bfloat16

One call attends 57 decoding sequences of 32-700 tokens (the 26.7 M benchmark model's shape
by default) through a shuffled block table; prints the best per-call time of `--repeats`
rounds, the K + V bytes read per second and the attention's FLOP/s. With `--chunk-tokens N`
each sequence's last N tokens are queries instead (a prompt chunk ending at that length,
each token attending keys up to its position). Run it on two trees to compare kernel versions.
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from chatstack.engine.attention import AttentionMetadata
from chatstack.engine.cpu_kernels import paged_attention_kernel
from chatstack.engine.huge_pages import huge_page_zeros


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--sequences", type=int, default=57)
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--chunk-tokens", type=int, default=1,
                        help="queries per sequence: 1 = decodes; more = a prompt chunk of that many tokens (<= 32)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of 20 calls; the best round counts")
    parser.add_argument("--huge-pages", action="store_true",
                        help="caches on 2 MiB transparent huge pages, as the engine allocates its pool")
    parser.add_argument("--layout", choices=("slot-major", "head-major"), default="slot-major",
                        help="a block's rows: slot by slot with the KV heads side by side (the engine's pool), or "
                             "each KV head's slots contiguous")
    parser.add_argument("--layers", type=int, default=1,
                        help="separate caches called in turn, as an engine's layers are (8: K/V come from memory, "
                             "not the last call's cache)")
    args = parser.parse_args(argv)
    if not 1 <= args.chunk_tokens <= 32:
        parser.error("--chunk-tokens must be in [1, 32]")
    if args.heads % args.kv_heads or min(args.kv_heads, args.head_dim, args.sequences, args.repeats, args.layers) < 1:
        parser.error("--heads must be a multiple of --kv-heads; sizes must be >= 1")
    return args


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    kernel = paged_attention_kernel()
    if kernel is None:
        raise SystemExit("the C kernel could not be built here (no C compiler?)")
    torch.manual_seed(0)
    rng = random.Random(0)
    dtype, block_size = getattr(torch, args.dtype), args.block_size
    lengths = [rng.randint(32, 700) for _ in range(args.sequences)]
    counts = [length // block_size + 1 for length in lengths]  # blocks holding keys [0, length]
    order = list(range(1, sum(counts) + 1))
    rng.shuffle(order)  # blocks scattered over the pool, as after many admissions and frees
    head_major = args.layout == "head-major"
    shape = (sum(counts) + 1, args.kv_heads, block_size, args.head_dim) if head_major else \
        (sum(counts) + 1, block_size, args.kv_heads, args.head_dim)

    def cache() -> torch.Tensor:
        pool = huge_page_zeros(shape, dtype)[0].normal_() if args.huge_pages else torch.randn(shape, dtype=dtype)
        return pool.transpose(1, 2) if head_major else pool  # (blocks, block_size, kv_heads, head_dim) either way

    caches = [(cache(), cache()) for _ in range(args.layers)]
    starts = [sum(counts[:i]) for i in range(len(counts))]
    n = args.chunk_tokens  # queries at positions [length + 1 - n, length]
    chunks = [(length + 1 - n, n, order[start:start + count]) for length, start, count in zip(lengths, starts, counts)]
    decodes = AttentionMetadata.build(chunks, block_size, "cpu", True, chunk_kernel=True).kernel_decodes
    q = torch.randn(n * len(chunks), args.heads, args.head_dim, dtype=dtype)
    out = torch.empty(n * len(chunks), args.heads * args.head_dim, dtype=dtype)
    best = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        for call in range(20):
            k_cache, v_cache = caches[call % args.layers]
            kernel(q, k_cache, v_cache, decodes.block_tables, decodes.query_token, decodes.query_pos, out,
                   args.head_dim ** -0.5)
        best = min(best, (time.perf_counter() - start) / 20)
    kv_bytes = sum(length + 1 for length in lengths) * args.kv_heads * args.head_dim * q.element_size() * 2
    flops = 4 * args.heads * args.head_dim * int(decodes.query_pos.add(1).sum())  # q.k and weight x value per key
    report = (f"{args.sequences} {'decodes' if n == 1 else f'chunks of {n} tokens'}, {args.heads} heads / {args.kv_heads} KV heads x {args.head_dim}, "
              f"{args.layers} cache{'s' if args.layers > 1 else ''}{' on huge pages' if args.huge_pages else ''}, "
              f"{args.layout}, "
              f"{args.dtype}: {best * 1e3:.3f} ms per call, {kv_bytes / best / 1e9:.2f} GB/s of K+V, "
              f"{flops / best / 1e9:.1f} GFLOP/s "
              f"(threads {torch.get_num_threads()})")
    print(report)
    return report


if __name__ == "__main__":
    main()
