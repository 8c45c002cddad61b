"""Decode speed of the weight-only quantized models against float32, and of the one-call step against the batched one.

    python -m chatstack.bench.quantized_decode --threads 1

On one model (the 26.7 M benchmark model by default, random weights), for float32, int8 and int4 each run by the
one-call decode step (`single_decode="auto"`) and by the batched torch step (`"off"`), side by side in one process:
single-stream greedy decode (median ms per token, `bench.single_stream`), then `--seqs` greedy streams decoding
together (decode-only steps of that many sequences; output tokens per second, prompts of `--prompt` tokens
prefilled first), and the weight bytes a decode step reads. Perplexity of each quantized model against float32 is
`chatstack.bench.engine`'s quant report; this one is about time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaConfig

from chatstack.backends.base import GenerationRequest, SamplingParams
from chatstack.bench.single_stream import decode_weight_bytes, single_stream_ms
from chatstack.bench.workload import random_llama, torch_threads
from chatstack.engine.config import EngineConfig
from chatstack.engine.llm_engine import LLMEngine

QUANTIZATIONS = (None, "int8", "int4")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", help="HF Llama checkpoint folder; default: a random-init Llama")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--tokens", type=int, default=64, help="decode steps a single stream is timed over")
    parser.add_argument("--seqs", type=int, nargs="+", default=[8, 32], help="streams decoding together")
    parser.add_argument("--prompt", type=int, default=32, help="prompt tokens of every stream")
    parser.add_argument("--output", type=int, default=64, help="output tokens of each of the --seqs streams")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the one-call step of several "
                                                                   "sequences runs at one)")
    args = parser.parse_args(argv)
    if min(args.seqs + [args.hidden, args.layers, args.vocab, args.tokens, args.prompt, args.output, args.threads]) < 1:
        parser.error("sizes, --tokens, --seqs, --prompt, --output and --threads must be >= 1")
    return args


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    with torch_threads(args.threads), tempfile.TemporaryDirectory() as scratch:
        model_dir = Path(args.model_dir) if args.model_dir else random_llama(
            Path(scratch), args.hidden, args.layers, args.vocab, 0)
        report = compare(args, model_dir)
    print(report)
    return report


def streams_tok_s(engine: LLMEngine, seqs: int, prompt: int, output: int, vocab: int) -> float:
    """Output tokens per second of `seqs` greedy streams decoding together, timed from the step after every prompt
    was prefilled (and its first token sampled) to the last token."""
    sampling = SamplingParams(max_tokens=output, temperature=0.0, ignore_eos=True)
    for i in range(seqs):
        engine.add_request(GenerationRequest(f"s{i}", tuple((7 * i + 3 * t) % vocab for t in range(prompt)), sampling))
    while any(seq.num_completion_tokens == 0 for seq in engine.sequences.values()):
        engine.step()
    start, decoded = time.perf_counter(), sum(seq.num_completion_tokens for seq in engine.sequences.values())
    while engine.has_unfinished():
        engine.step()
    return (seqs * output - decoded) / (time.perf_counter() - start)


def compare(args: argparse.Namespace, model_dir: Path) -> str:
    vocab = LlamaConfig.from_pretrained(model_dir).vocab_size
    prompt = tuple(range(3, 3 + args.prompt))
    blocks = max(args.seqs) * -(-(args.prompt + args.output) // 16) + 8
    results = {}
    for quantization in QUANTIZATIONS:
        for mode in ("auto", "off"):
            engine = LLMEngine(model_dir, EngineConfig(block_size=16, num_kv_blocks=blocks, quantization=quantization,
                                                       single_decode=mode, max_num_seqs=max(args.seqs)))
            results[quantization, mode] = {  # the one-call step reads its panels: the same bytes, reordered
                "one_call": engine.runner.single_decode is not None,
                "mib": decode_weight_bytes(engine.runner.model) / 2**20,
                "single_ms": single_stream_ms(engine, prompt, args.tokens),
                **{f"tok_s_{s}": streams_tok_s(engine, s, args.prompt, args.output, vocab) for s in args.seqs}}
    fp32 = results[None, "auto"]
    lines = [f"command: `python -m chatstack.bench.quantized_decode {' '.join(argv_of(args))}`",
             f"{torch.get_num_threads()} torch threads; float32 activations and KV cache", "",
             "| weights | decode step | MiB a step reads | single stream ms/token | "
             + " | ".join(f"{s} streams tok/s" for s in args.seqs) + " | single-stream speed ÷ float32 one-call |",
             "|---|---|---|---|" + "---|" * len(args.seqs) + "---|"]
    for (quantization, mode), r in results.items():
        step = "one call" if r["one_call"] else "batched torch"
        lines.append(f"| {quantization or 'float32'} | {step} | {r['mib']:.1f} | {r['single_ms']:.3f} | "
                     + " | ".join(f"{r[f'tok_s_{s}']:.1f}" for s in args.seqs)
                     + f" | {fp32['single_ms'] / r['single_ms']:.2f}× |")
    lines.append("")
    for quantization in QUANTIZATIONS:
        one, batched = results[quantization, "auto"], results[quantization, "off"]
        lines.append(f"{quantization or 'float32'}: one call ÷ batched, single stream "
                     f"{batched['single_ms'] / one['single_ms']:.2f}×; "
                     + "; ".join(f"{s} streams {one[f'tok_s_{s}'] / batched[f'tok_s_{s}']:.2f}×" for s in args.seqs))
    return "\n".join(lines)


def argv_of(args: argparse.Namespace) -> list[str]:
    """The arguments as they would be typed (every option, defaults included), for the report's command line."""
    out = [] if args.model_dir is None else ["--model-dir", args.model_dir]
    for name in ("hidden", "layers", "vocab", "tokens", "prompt", "output", "threads"):
        out += [f"--{name}", str(getattr(args, name))]
    return out + ["--seqs", *map(str, args.seqs)]


if __name__ == "__main__":
    main()
