"""Weight-only quantization (int8 per channel, int4 group-wise packed): small error and a working engine.
Also the prepacked bfloat16 / float16 / float32 projections (the results of a plain matmul)."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaForCausalLM

from chatstack.backends.base import GenerationRequest, SamplingParams
from chatstack.engine.config import EngineConfig
from chatstack.engine.llm_engine import LLMEngine
from chatstack.engine.quant import Dense, Int4Linear, Int8Linear, PackedDense, dense, float32_prepack_pays
from tests.unit.engine.helpers import PROMPTS, assert_engine_idle, needs_c_compiler


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


def test_int4_linear_packs_two_codes_per_byte_and_stays_close_to_the_float_matmul():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(48, 70, generator=generator)  # 70 inputs: the last group of 32 is zero-padded
    x = torch.randn(5, 70, generator=generator)
    exact = x @ weight.T
    quantized = Int4Linear(weight, group_size=32)
    assert quantized.packed.dtype is torch.uint8 and tuple(quantized.packed.shape) == (48, 48)  # (96 / 2, out)
    assert tuple(quantized.scale.shape) == (3, 48)
    # each weight is within half a quantization step of its group's grid
    step = quantized.scale.repeat_interleave(32, dim=0)[:70]  # (in, out)
    assert ((quantized.dequantized_t(torch.float32) - weight.T).abs() <= step / 2 + 1e-6).all()
    relative = ((quantized(x) - exact).norm() / exact.norm()).item()
    assert relative < 0.12  # 4 bits: ~7% on Gaussian weights; int8 is ~0.5%


def test_int4_represents_a_4_bit_grid_exactly():
    levels = torch.arange(16, dtype=torch.float32) * 0.5 - 3.0  # 16 evenly spaced values, min -3, max 4.5
    weight = levels.repeat(4, 2)  # (4, 32): every group holds the whole grid
    assert torch.equal(Int4Linear(weight, group_size=32).dequantized_t(torch.float32).T, weight)


def test_int4_engine_equals_hf_generate_on_the_dequantized_weights(tiny_llama):
    """Every projection (LM head included) quantized per output row, so HF with each Linear's weight
    replaced by its int4 round trip is the exact reference for the int4 engine."""
    model = LlamaForCausalLM.from_pretrained(tiny_llama).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.copy_(Int4Linear(module.weight).dequantized_t(torch.float32).T)
    prompt = PROMPTS[1]
    input_ids = torch.tensor([list(prompt)])
    with torch.inference_mode():
        expected = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                                  max_new_tokens=24, min_new_tokens=24, eos_token_id=None)[0, len(prompt):].tolist()
    engine = LLMEngine(tiny_llama, EngineConfig(block_size=4, num_kv_blocks=64, quantization="int4"))
    tokens = engine.generate([GenerationRequest("q", prompt, SamplingParams(max_tokens=24, temperature=0.0))])["q"]
    assert tokens == expected
    assert_engine_idle(engine)


@pytest.mark.parametrize("dtype", [
    pytest.param(dtype, marks=pytest.mark.skipif(not PackedDense.applies(torch.zeros(1, dtype=dtype)),
                                                 reason=f"oneDNN cannot run {dtype} on this CPU (or torch has no oneDNN)"))
    for dtype in (torch.bfloat16, torch.float16)])
def test_packed_projection_equals_the_plain_matmul(dtype):
    generator = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(96, 40, generator=generator).to(dtype), torch.randn(96, generator=generator).to(dtype)
    projection, with_bias = dense(weight, None, None), dense(weight, bias, None)
    assert isinstance(projection, PackedDense)
    for rows in (1, 7, 64, 300):  # decode-sized and prefill-sized batches, each a new oneDNN shape
        x = torch.randn(rows, 40, generator=generator).to(dtype)
        torch.testing.assert_close(projection(x), Dense(weight)(x), rtol=0, atol=0)
        # the bias is added before the one rounding, so the result is at least as close to float32
        exact = x.float() @ weight.float().T + bias.float()
        assert (with_bias(x).float() - exact).abs().max() <= (Dense(weight, bias)(x).float() - exact).abs().max()
    assert isinstance(dense(weight.float(), None, None), Dense)  # float32 stays with the plain matmul (MKL)


@pytest.mark.skipif(not PackedDense.applies(torch.zeros(1, dtype=torch.bfloat16)), reason="oneDNN cannot run bfloat16 on this CPU (or torch has no oneDNN)")
def test_bfloat16_engine_with_packed_weights_generates_what_plain_weights_do(tiny_llama, monkeypatch):
    requests = [GenerationRequest(f"r{i}", prompt, SamplingParams(max_tokens=12, temperature=0.0))
                for i, prompt in enumerate(PROMPTS)]
    packed = LLMEngine(tiny_llama, EngineConfig(block_size=4, num_kv_blocks=128), dtype=torch.bfloat16)
    assert isinstance(packed.runner.model.layers[0].gate_up, PackedDense)
    got = packed.generate(requests)
    monkeypatch.setattr(PackedDense, "applies", staticmethod(lambda weight, float32=False: False))
    plain = LLMEngine(tiny_llama, EngineConfig(block_size=4, num_kv_blocks=128), dtype=torch.bfloat16)
    assert isinstance(plain.runner.model.layers[0].gate_up, Dense)
    assert got == plain.generate(requests)
    assert_engine_idle(packed)


@pytest.mark.parametrize("dtype, supported", [(torch.bfloat16, "_is_mkldnn_bf16_supported"),
                                              (torch.float16, "_is_mkldnn_fp16_supported")])
def test_half_precision_weights_are_prepacked_only_where_onednn_runs_that_dtype(dtype, supported):
    """oneDNN refuses to reorder bfloat16 weights on an AVX2-only CPU: there the plain matmul is used, and the
    projection still computes x @ W.T + b."""
    weight, bias = torch.randn(24, 16).to(dtype), torch.randn(24).to(dtype)
    projection = dense(weight, bias, None)
    assert isinstance(projection, PackedDense) == bool(getattr(torch.ops.mkldnn, supported)())
    x = torch.randn(3, 16).to(dtype)
    torch.testing.assert_close(projection(x).float(), (x.float() @ weight.float().T + bias.float()), rtol=2e-2, atol=5e-2)


@pytest.mark.skipif(not PackedDense.applies(torch.zeros(0), float32=True), reason="torch has no oneDNN here")
def test_float32_packed_projection_matches_the_plain_matmul_to_rounding():
    generator = torch.Generator().manual_seed(1)
    weight, bias = torch.randn(96, 40, generator=generator), torch.randn(96, generator=generator)
    assert isinstance(dense(weight, None, None), Dense)  # float32 is prepacked only when asked
    projection = dense(weight, bias, None, prepack_float32=True, keep_plain=True)
    assert isinstance(projection, PackedDense) and projection.packed.dtype == torch.float32
    assert torch.equal(projection.weight_t, weight.T)  # the plain copy the one-call step reads
    for rows in (1, 7, 64, 300):
        x = torch.randn(rows, 40, generator=generator)
        torch.testing.assert_close(projection(x), Dense(weight, bias)(x), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not PackedDense.applies(torch.zeros(0), float32=True), reason="torch has no oneDNN here")
def test_float32_prepacked_engine_keeps_the_one_call_step_and_generates_what_hf_does(tiny_llama, references):
    requests = [GenerationRequest(f"r{i}", p, SamplingParams(max_tokens=len(references[p]), temperature=0.0))
                for i, p in enumerate(PROMPTS)]
    engine = LLMEngine(tiny_llama, EngineConfig(block_size=4, num_kv_blocks=128, float32_prepack="on"))
    model = engine.runner.model
    assert all(isinstance(m, PackedDense) for layer in model.layers for m in (layer.qkv, layer.gate_up))
    assert isinstance(model.lm_head, PackedDense)
    path = engine.runner.single_decode
    assert path is not None  # "auto" kept the plain copies the one-call step packs into its own panels
    assert model.lm_head.weight_t is None and model.layers[0].qkv.weight_t is None  # released once packed
    assert path.weight_bytes == 4 * sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, PackedDense))
    got = engine.generate(requests)  # a batch, then lone decodes as the shorter ones finish
    assert [got[f"r{i}"] for i in range(len(PROMPTS))] == [references[p] for p in PROMPTS]
    assert_engine_idle(engine)
    off = LLMEngine(tiny_llama, EngineConfig(block_size=4, num_kv_blocks=16, float32_prepack="on",
                                             single_decode="off"))
    assert off.runner.single_decode is None and off.runner.model.layers[0].qkv.weight_t is None


@pytest.mark.parametrize("pays", [True, False])
def test_float32_prepack_auto_follows_the_load_time_probe(tiny_llama, monkeypatch, pays):
    monkeypatch.setattr("chatstack.engine.model_runner.float32_prepack_pays", lambda threads: pays)
    engine = LLMEngine(tiny_llama, EngineConfig(block_size=4, num_kv_blocks=16))
    packed = isinstance(engine.runner.model.layers[0].down, PackedDense)
    assert packed == (pays and PackedDense.applies(torch.zeros(0), float32=True))
    assert not isinstance(LLMEngine(tiny_llama, EngineConfig(block_size=4, num_kv_blocks=16, float32_prepack="off"))
                          .runner.model.layers[0].down, PackedDense)
    bf16 = LLMEngine(tiny_llama, EngineConfig(block_size=4, num_kv_blocks=16), dtype=torch.bfloat16)
    assert all(m.packed.dtype == torch.bfloat16 for m in bf16.runner.model.modules() if isinstance(m, PackedDense))


def test_float32_prepack_probe_answers_once_per_thread_count():
    answer = float32_prepack_pays(torch.get_num_threads())
    assert isinstance(answer, bool)
    assert float32_prepack_pays.cache_info().currsize >= 1


def test_float32_prepack_settings_are_checked():
    with pytest.raises(ValueError, match="float32_prepack"):
        EngineConfig(float32_prepack="yes")


@needs_c_compiler  # its rows name the one-call step each engine takes
def test_quantized_decode_benchmark_times_every_weight_kind_both_ways_and_rejects_bad_sizes():
    from chatstack.bench import quantized_decode

    threads = torch.get_num_threads()
    report = quantized_decode.main(["--hidden", "64", "--layers", "1", "--vocab", "300", "--tokens", "4",
                                    "--seqs", "3", "--prompt", "5", "--output", "4", "--threads", "2"])
    rows = [line.split(" | ") for line in report.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [(r[0], r[1]) for r in rows] == [(f"| {w}", step) for w in ("float32", "int8", "int4")
                                            for step in ("one call", "batched torch")]
    assert all(float(r[3]) > 0 and float(r[4]) > 0 for r in rows)  # ms/token and tok/s measured for each
    assert "int4: one call ÷ batched" in report
    assert torch.get_num_threads() == threads  # the caller's thread count back
    with pytest.raises(SystemExit):
        quantized_decode.main(["--seqs", "0"])
