"""Int8 weight-only quantization: small, per-channel error and a working engine."""

from __future__ import annotations

import torch

from chatstack.backends.base import GenerationRequest, SamplingParams
from chatstack.engine.config import EngineConfig
from chatstack.engine.llm_engine import LLMEngine
from chatstack.engine.quant import Int8Linear
from tests.unit.engine.helpers import PROMPTS, assert_engine_idle


def test_int8_linear_is_close_to_the_float_matmul():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(48, 32, generator=generator) * torch.linspace(0.01, 3.0, 48)[:, None]  # rows differ in scale
    x = torch.randn(5, 32, generator=generator)
    exact = x @ weight.T  # (5, 48)
    quantized = Int8Linear(weight)
    assert quantized.weight_t.dtype is torch.int8
    relative = (quantized(x) - exact).norm(dim=0) / exact.norm(dim=0)  # per output channel
    assert relative.max() < 0.02


def test_int8_engine_generates_and_frees_everything(tiny_llama, references):
    engine = LLMEngine(tiny_llama, EngineConfig(block_size=4, num_kv_blocks=64, quantization="int8"))
    tokens = engine.generate([GenerationRequest("q", PROMPTS[1], SamplingParams(max_tokens=24, temperature=0.0))])["q"]
    agreement = sum(a == b for a, b in zip(tokens, references[PROMPTS[1]])) / len(tokens)
    assert len(tokens) == 24 and agreement >= 0.5
    assert_engine_idle(engine)
