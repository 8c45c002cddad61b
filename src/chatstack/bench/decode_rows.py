"""A decode-only step of several sequences three ways: the batched torch step (oneDNN's matmuls on every torch
thread), the one-call rows in one C call, and the same rows in parts on threads of their own.

    python -m chatstack.bench.decode_rows --threads 2 --rows 4 8 16 32 64

On one model (the 26.7 M benchmark model by default, random weights, float32), `rows` sequences with prompts of
`--prompt` tokens are prefilled, then their next decode step is run from the same KV cache each way, taking
turns, `--repeats` rounds; the best round counts. The parts are those the engine runs on `--threads` torch
threads (`SingleDecodePath.rows`, parts of at least DECODE_ROWS_PER_THREAD rows). This is what the engine's
choice on several threads rests on (ModelRunner._decodes_in_one_call).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from chatstack.backends.base import GenerationRequest, SamplingParams
from chatstack.bench.workload import random_llama, torch_threads
from chatstack.engine.config import EngineConfig
from chatstack.engine.cpu_kernels import decode_step_kernel
from chatstack.engine.llm_engine import LLMEngine


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="torch threads, and the parts' thread count")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="weights, activations and KV cache (bfloat16 also times the widening panels against "
                             "the pair dot product, where the kernel has it)")
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args(argv)
    if min(args.rows + [args.hidden, args.layers, args.vocab, args.prompt, args.threads, args.repeats]) < 1:
        parser.error("sizes, --rows, --prompt, --threads and --repeats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    with torch_threads(args.threads), tempfile.TemporaryDirectory() as scratch:
        report = compare(args, random_llama(Path(scratch), args.hidden, args.layers, args.vocab, 0))
    print(report)
    return report


def compare(args: argparse.Namespace, model_dir: Path) -> str:
    most = args.prompt + max(args.rows) + 8  # tokens a sequence can hold (the sampling below)
    blocks = max(args.rows) * -(-most // 16) + 8
    config = EngineConfig(block_size=16, num_kv_blocks=blocks, max_num_seqs=max(args.rows))
    engine = LLMEngine(model_dir, config, dtype=getattr(torch, args.dtype))
    runner, path = engine.runner, engine.runner.single_decode
    if path is None:
        raise SystemExit("needs the one-call decode step (C kernels built)")
    widening = None  # bfloat16 with the pair dot product: the same step over widening panels too, in an engine
    if path.pairs:   # built with the kernel's pairs hidden, its pool a copy of this one's before each step
        kernel = decode_step_kernel()
        kernel.bf16_pairs = False
        try:
            widening = LLMEngine(model_dir, config, dtype=getattr(torch, args.dtype)).runner
        finally:
            kernel.bf16_pairs = True
    lines = [f"`python -m chatstack.bench.decode_rows --threads {args.threads} --dtype {args.dtype} --repeats "
             f"{args.repeats} --rows {' '.join(map(str, args.rows))}`"
             f" ({args.layers} layers, hidden {args.hidden}, vocab {args.vocab}, {args.dtype}, {args.prompt}-token "
             f"prompts; one call: {'the pair dot product' if path.pairs else 'widening panels'})", "",
             f"| rows | batched step ({args.threads} threads) ms | one call ms | parts on {args.threads} threads ms "
             "| parts ÷ batched speed | one call ÷ batched speed |"
             + (" widening one call ms | one call ÷ widening speed |" if widening else ""),
             "|---|---|---|---|---|---|" + ("---|---|" if widening else "")]
    # room for the decodes the prefill steps run beside later prompts: no sequence may finish before the timed step
    sampling = SamplingParams(max_tokens=max(args.rows) + 8, temperature=0.0, ignore_eos=True)
    for rows in args.rows:
        for i in range(rows):
            engine.add_request(GenerationRequest(f"r{rows}-{i}", tuple((7 * i + 3 * t) % args.vocab
                                                                      for t in range(args.prompt)), sampling))
        while any(seq.num_completion_tokens == 0 for seq in engine.sequences.values()):
            engine.step()
        output = engine.scheduler.schedule()
        chunks = output.chunks
        if len(chunks) != rows or any(c.num_tokens != 1 for c in chunks):
            raise RuntimeError(f"the step to time holds {len(chunks)} chunks, not {rows} decodes")
        step = ([c.seq.token_ids[c.start] for c in chunks], [c.start for c in chunks],
                [c.seq.block_table for c in chunks])
        before = runner.kv_cache.clone()
        ways = {"batched": lambda: runner._batched_logits(output),
                "one call": lambda: path.rows(*step, greedy=True),
                "parts": lambda: path.rows(*step, greedy=True, threads=args.threads)}
        if widening is not None:
            widening.kv_cache.copy_(runner.kv_cache)
            ways["widening"] = lambda: widening.single_decode.rows(*step, greedy=True)
        best = dict.fromkeys(ways, float("inf"))
        with torch.inference_mode():
            for _ in range(args.repeats):
                for name, run in ways.items():
                    start = time.perf_counter()
                    run()
                    best[name] = min(best[name], time.perf_counter() - start)
        # each way writes the step's slots before its attention reads them, so the rounds need no restore between
        # them (a restore between ways, a copy of the whole pool, left every run to start from an evicted cache)
        runner.kv_cache.copy_(before)
        ms = {name: 1e3 * seconds for name, seconds in best.items()}
        lines.append(f"| {rows} | {ms['batched']:.2f} | {ms['one call']:.2f} | {ms['parts']:.2f} | "
                     f"{ms['batched'] / ms['parts']:.2f}× | {ms['batched'] / ms['one call']:.2f}× |"
                     + (f" {ms['widening']:.2f} | {ms['widening'] / ms['one call']:.2f}× |" if widening else ""))
        for request_id in list(engine.sequences):
            engine.abort(request_id)
    return "\n".join(lines)


if __name__ == "__main__":
    main()
