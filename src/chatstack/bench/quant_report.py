"""Weight-only quantization in the engine benchmark: perplexity vs fp32 and decode time."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from chatstack.backends.base import GenerationRequest, SamplingParams
from chatstack.engine.attention import AttentionMetadata
from chatstack.engine.config import EngineConfig
from chatstack.engine.llm_engine import LLMEngine


def perplexity(engine: LLMEngine, tokens: list[int]) -> float:
    """exp(mean next-token NLL) of `tokens` under the engine's model, one teacher-forced forward."""
    model, block = engine.runner.model, engine.config.block_size
    meta = AttentionMetadata.build([(0, len(tokens), list(range(-(-len(tokens) // block))))], block, "cpu")
    ids, positions = torch.tensor(tokens), torch.arange(len(tokens))
    with torch.inference_mode():
        logits = model(ids, positions, engine.runner.kv_cache, meta, positions)  # (T, vocab)
    nll = torch.nn.functional.cross_entropy(logits[:-1], ids[1:])
    return float(nll.exp())


def quant_report(model_dir: Path, block_size: int, seed: int, fp32: LLMEngine, fp32_ms: float,
                 decode_ms: Callable[[LLMEngine, tuple[int, ...]], float]) -> str:
    """int8 and int4 against fp32 on 271 tokens sampled (temperature 1) from the fp32 model;
    `decode_ms` is the same single-stream timing that gave `fp32_ms`."""
    prompt = tuple(range(3, 19))
    sample = SamplingParams(max_tokens=255, temperature=1.0, seed=seed, ignore_eos=True)
    text = list(prompt) + fp32.generate([GenerationRequest("ppl", prompt, sample)])["ppl"]
    base = perplexity(fp32, text)
    lines = []
    for quantization, label in (("int8", "int8 per channel"), ("int4", "int4 group 32, packed")):
        engine = LLMEngine(model_dir, EngineConfig(block_size=block_size, num_kv_blocks=64, quantization=quantization))
        ppl, ms = perplexity(engine, text), decode_ms(engine, prompt)
        lines.append(f"{label} weight-only: perplexity {ppl:.3f} vs fp32 {base:.3f} ({100 * (ppl / base - 1):+.2f}%) "
                     f"on {len(text)} tokens sampled from the fp32 model; decode {ms:.2f} ms/token vs fp32 {fp32_ms:.2f}")
    return "\n".join(lines)
