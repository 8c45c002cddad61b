"""The one-call decode step equals the batched forward, and is used only where it applies."""

from __future__ import annotations

import pytest
import torch

from chatstack.backends.base import FinishReason, GenerationRequest, SamplingParams
from chatstack.engine.config import EngineConfig
from chatstack.engine.llm_engine import LLMEngine
from chatstack.engine.quant import PackedDense
from chatstack.engine.scheduler import ScheduledChunk, SchedulerOutput
from tests.unit.engine.helpers import MAX_NEW, PROMPTS, assert_engine_idle, hf_greedy, needs_c_compiler, save_random_llama

pytestmark = needs_c_compiler


def prefilled(engine: LLMEngine, prompt) -> ScheduledChunk:
    """Run a prompt's prefill; return the decode chunk of its next step (not yet run)."""
    engine.add_request(GenerationRequest("r", tuple(prompt), SamplingParams(max_tokens=8, temperature=0.0)))
    engine.step()
    (chunk,) = engine.scheduler.schedule().chunks
    assert chunk.num_tokens == 1
    return chunk


def both_paths(engine: LLMEngine, chunk: ScheduledChunk):
    """The next decode of `chunk` both ways from the same cache -> (one-call logits, the cache it wrote,
    batched logits, the cache the batched step wrote, the cache before either)."""
    runner = engine.runner
    cache_before = runner.kv_cache.clone()
    one_call = runner.single_decode.logits(chunk.seq.token_ids[chunk.start], chunk.start, chunk.seq.block_table)
    cache_one_call = runner.kv_cache.clone()
    runner.kv_cache.copy_(cache_before)
    batched = runner._batched_logits(SchedulerOutput((chunk,)))
    return one_call, cache_one_call, batched, runner.kv_cache, cache_before


@pytest.mark.parametrize("variant", [{}, {"attention_bias": True, "tie_word_embeddings": True},
                                     {"num_key_value_heads": 1, "head_dim": 24, "hidden_size": 96}],
                         ids=["gqa", "biases-tied", "mqa-odd-head"])
def test_one_call_logits_equal_the_batched_forward(tmp_path, variant):
    model_dir = save_random_llama(tmp_path, seed=3, **variant)
    engine = LLMEngine(model_dir, EngineConfig(block_size=4, num_kv_blocks=64))
    runner = engine.runner
    assert runner.single_decode is not None
    one_call, cache_one_call, batched, cache_batched, _ = both_paths(engine, prefilled(engine, PROMPTS[2]))
    torch.testing.assert_close(one_call, batched, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cache_one_call, cache_batched, rtol=1e-5, atol=1e-5)  # same K/V written
    engine.abort("r")
    assert_engine_idle(engine)


@pytest.mark.parametrize("quantization, stored", [("int8", torch.int8), ("int4", torch.uint8)])
@pytest.mark.parametrize("variant", [{}, {"attention_bias": True, "tie_word_embeddings": True},
                                     {"num_key_value_heads": 1, "head_dim": 24, "hidden_size": 96},
                                     # int4: inputs of 75 and 150 channels, not whole groups of 32 (the last
                                     # group partial, down's last byte row holding one code)
                                     {"intermediate_size": 75, "num_key_value_heads": 1}],
                         ids=["gqa", "biases-tied", "mqa-odd-head", "odd-intermediate"])
def test_quantized_one_call_step_equals_the_batched_forward_and_generates_what_it_does(tmp_path, variant,
                                                                                      quantization, stored):
    model_dir = save_random_llama(tmp_path, seed=7, **variant)
    engine = LLMEngine(model_dir, EngineConfig(block_size=4, num_kv_blocks=64, quantization=quantization))
    path = engine.runner.single_decode
    # a quarter (int8) or an eighth (int4, two codes a byte) of the float32 panels' bytes
    assert path is not None and path.weights.dtype == stored
    spec = engine.runner.model.spec
    q, kv, hidden, inter = spec.num_heads * spec.head_dim, spec.num_kv_heads * spec.head_dim, spec.hidden_size, \
        spec.intermediate_size
    shapes = [(hidden, q + 2 * kv), (q, hidden), (hidden, 2 * inter), (inter, hidden)] * spec.num_layers
    rows = (lambda k: -(-k // 32) * 16) if stored == torch.uint8 else (lambda k: k)  # int4: whole groups, 2 a byte
    assert path.weight_bytes == sum(rows(k) * n for k, n in shapes + [(hidden, spec.vocab_size)])
    one_call, cache_one_call, batched, cache_batched, _ = both_paths(engine, prefilled(engine, PROMPTS[2]))
    torch.testing.assert_close(one_call, batched, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cache_one_call, cache_batched, rtol=1e-5, atol=1e-5)
    engine.abort("r")
    batched_engine = LLMEngine(model_dir, EngineConfig(block_size=4, num_kv_blocks=64, quantization=quantization,
                                                       single_decode="off"))
    counts = count_one_call_tokens(engine)
    for i, prompt in enumerate(PROMPTS[:3]):  # one at a time: every decode after the first token is a lone step
        request = GenerationRequest(f"q{i}", prompt, SamplingParams(max_tokens=10, temperature=0.0))
        assert engine.generate([request]) == batched_engine.generate([request])
    # + 1: PROMPTS[2] was cached by the first check, so its prefill is its last token alone, a one-call step too
    assert sum(counts) == 3 * 9 + 1
    assert_engine_idle(engine)
    assert_engine_idle(batched_engine)


def test_one_call_path_follows_each_sequence_own_block_table_and_rejects_a_token_outside_the_vocabulary(tmp_path):
    """The path keeps the last block table it converted: sequences of equal table length take turns."""
    engine = LLMEngine(save_random_llama(tmp_path, seed=5), EngineConfig(block_size=4, num_kv_blocks=64))
    runner, sampling = engine.runner, SamplingParams(max_tokens=8, temperature=0.0)
    for name, prompt in (("a", PROMPTS[2]), ("b", PROMPTS[2][::-1])):  # equal lengths, other blocks and tokens
        engine.add_request(GenerationRequest(name, tuple(prompt), sampling))
    engine.step()  # both prefills
    chunks = {c.seq.seq_id: c for c in engine.scheduler.schedule().chunks}
    assert len(chunks["a"].seq.block_table) == len(chunks["b"].seq.block_table)
    assert chunks["a"].seq.block_table != chunks["b"].seq.block_table
    for name in ("a", "b", "a"):
        one_call, _, batched, _, _ = both_paths(engine, chunks[name])
        torch.testing.assert_close(one_call, batched, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        runner.single_decode.logits(runner.model.spec.vocab_size, 0, chunks["a"].seq.block_table)
    for name in chunks:
        engine.abort(name)
    assert_engine_idle(engine)


def count_one_call_tokens(engine: LLMEngine) -> list[int]:
    """Patch the engine's one-call path to record how many tokens each of its calls gave (several for a call of
    several decode steps)."""
    path, counts = engine.runner.single_decode, []
    greedy, greedy_steps = path.greedy, path.greedy_steps
    path.greedy = lambda *a: counts.append(1) or greedy(*a)
    path.greedy_steps = lambda *a: (lambda tokens: counts.append(len(tokens)) or tokens)(greedy_steps(*a))
    return counts


@pytest.mark.parametrize("lone_decode_steps", [1, 4])
def test_single_request_through_the_one_call_path_matches_hf(tiny_llama, references, lone_decode_steps):
    engine = LLMEngine(tiny_llama, EngineConfig(block_size=4, num_kv_blocks=64, lone_decode_steps=lone_decode_steps,
                                                lone_decode_budget_ms=1000))
    counts = count_one_call_tokens(engine)
    prompt = PROMPTS[1]
    assert engine.generate([GenerationRequest("s", prompt, SamplingParams(max_tokens=12, temperature=0.0))])["s"] == \
        references[prompt][:12]
    assert sum(counts) == 11  # every decode after the prefill's first token
    # the first lone step measures its time; then up to lone_decode_steps tokens a call, the last call what is left
    assert counts == ([1] * 11 if lone_decode_steps == 1 else [1, 4, 4, 2])
    assert_engine_idle(engine)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_greedy_token_the_one_call_step_picks_is_the_argmax_of_its_logits(tmp_path, dtype):
    engine = LLMEngine(save_random_llama(tmp_path, seed=6), EngineConfig(block_size=4, num_kv_blocks=64,
                                                                         single_decode="on"), dtype=dtype)
    runner, chunk = engine.runner, prefilled(engine, PROMPTS[2])
    seq, start = chunk.seq, chunk.start
    before = runner.kv_cache.clone()
    logits = runner.single_decode.logits(seq.token_ids[start], start, seq.block_table)
    written = runner.kv_cache.clone()
    runner.kv_cache.copy_(before)
    token = runner.single_decode.greedy(seq.token_ids[start], start, seq.block_table)
    assert token == int(logits.float().argmax())
    assert torch.equal(runner.kv_cache, written)  # the same step: the same K/V
    engine.abort("r")
    assert_engine_idle(engine)


def test_a_lone_request_that_samples_or_is_penalised_takes_the_logits_not_the_greedy_token(tiny_llama):
    engine = LLMEngine(tiny_llama, EngineConfig(block_size=4, num_kv_blocks=64, lone_decode_steps=1))
    path, calls = engine.runner.single_decode, []
    for name in ("logits", "greedy"):
        original = getattr(path, name)
        setattr(path, name, lambda *a, name=name, original=original: calls.append(name) or original(*a))
    for request_id, prompt, sampling in (  # prompts sharing no block, so every prefill is a batched step
            ("t", PROMPTS[0], SamplingParams(max_tokens=5, temperature=0.8, seed=1)),
            ("p", PROMPTS[1], SamplingParams(max_tokens=5, temperature=0.0, repetition_penalty=1.3)),
            ("g", PROMPTS[2], SamplingParams(max_tokens=5, temperature=0.0))):
        calls.clear()
        assert len(engine.generate([GenerationRequest(request_id, prompt, sampling)])[request_id]) == 5
        assert calls == ["greedy" if request_id == "g" else "logits"] * 4, (request_id, calls)
    assert_engine_idle(engine)


def test_several_decode_steps_in_one_call_stop_at_a_stop_token_as_single_steps_do(tiny_llama):
    """A stop token inside a call of several steps ends the request there: the same tokens and finish as one step
    a call, and every block free after."""
    prompt = PROMPTS[1]
    single = LLMEngine(tiny_llama, EngineConfig(block_size=4, num_kv_blocks=64, lone_decode_steps=1))
    free_run = single.generate([GenerationRequest("f", prompt, SamplingParams(max_tokens=12, temperature=0.0))])["f"]
    stop = free_run[6]  # a token the run reaches mid-way (the first time it appears ends the request)
    expected = free_run[:free_run.index(stop)]
    for steps in (1, 8):
        engine = LLMEngine(tiny_llama, EngineConfig(block_size=4, num_kv_blocks=64, lone_decode_steps=steps,
                                                    lone_decode_budget_ms=1000))
        engine.add_request(GenerationRequest("s", prompt, SamplingParams(max_tokens=12, temperature=0.0),
                                             stop_token_ids=(stop,)))
        tokens, finish = [], None
        while engine.has_unfinished():
            for result in engine.step():
                tokens.extend(result.new_token_ids)
                finish = result.finish_reason or finish
        assert (tokens, finish) == (expected, FinishReason.STOP)
        assert_engine_idle(engine)


def test_a_request_arriving_during_lone_decode_steps_joins_the_batch_and_both_match_hf(tiny_llama, references):
    engine = LLMEngine(tiny_llama, EngineConfig(block_size=4, num_kv_blocks=64, lone_decode_steps=4,
                                                lone_decode_budget_ms=1000))
    counts = count_one_call_tokens(engine)
    sampling = SamplingParams(max_tokens=MAX_NEW, temperature=0.0)
    engine.add_request(GenerationRequest("a", PROMPTS[1], sampling))
    out = {"a": [], "b": []}
    for _ in range(3):  # prefill, one measured step, then a call of four
        for result in engine.step():
            out[result.request_id].extend(result.new_token_ids)
    assert counts == [1, 4] and len(out["a"]) == 6
    engine.add_request(GenerationRequest("b", PROMPTS[2], sampling))
    while engine.has_unfinished():
        for result in engine.step():
            out[result.request_id].extend(result.new_token_ids)
    assert out == {"a": references[PROMPTS[1]], "b": references[PROMPTS[2]]}
    assert_engine_idle(engine)


@pytest.mark.parametrize("settings", [dict(attention="torch"), dict(single_decode="off")], ids=["torch-attention", "off"])
def test_one_call_path_is_off_where_it_does_not_apply(tiny_llama, settings):
    engine = LLMEngine(tiny_llama, EngineConfig(num_kv_blocks=16, **settings))
    assert engine.runner.single_decode is None
    out = engine.generate([GenerationRequest("x", PROMPTS[0], SamplingParams(max_tokens=4, temperature=0.0))])
    assert len(out["x"]) == 4


def test_bfloat16_auto_takes_the_one_call_step_and_drops_the_plain_copies_once_packed(tiny_llama):
    engine = LLMEngine(tiny_llama, EngineConfig(num_kv_blocks=16), dtype=torch.bfloat16)
    path, modules = engine.runner.single_decode, list(engine.runner.model.modules())
    assert path is not None and path.weights.dtype == torch.bfloat16
    assert all(m.weight_t is None for m in modules if isinstance(m, PackedDense))  # the panels are the copy
    out = engine.generate([GenerationRequest("x", PROMPTS[0], SamplingParams(max_tokens=4, temperature=0.0))])
    assert len(out["x"]) == 4
    assert_engine_idle(engine)


def test_one_call_path_on_a_model_with_untied_head_and_llama3_rope(tmp_path):
    model_dir = save_random_llama(tmp_path, seed=5, rope_parameters={
        "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 32})
    engine = LLMEngine(model_dir, EngineConfig(block_size=4, num_kv_blocks=64))
    prompt = PROMPTS[3]
    assert engine.generate([GenerationRequest("v", prompt, SamplingParams(max_tokens=10, temperature=0.0))])["v"] == \
        hf_greedy(model_dir, prompt, 10)


@pytest.mark.parametrize("variant", [{}, {"attention_bias": True, "tie_word_embeddings": True}],
                         ids=["gqa", "biases-tied"])
def test_bfloat16_one_call_step_rounds_where_the_batched_step_rounds(tmp_path, variant):
    """In bfloat16 the two paths differ only in the order of each projection's float32 sums: the K/V written and
    the logits agree but for a few values a bfloat16 step apart (none on the machine this was written on); rounding
    a bias after the projection instead of before moved half the written K/V and most logits."""
    model_dir = save_random_llama(tmp_path, seed=4, **variant)
    engine = LLMEngine(model_dir, EngineConfig(block_size=4, num_kv_blocks=64, single_decode="on"),
                       dtype=torch.bfloat16)
    runner = engine.runner
    assert runner.single_decode is not None and runner.single_decode.weights.dtype == torch.bfloat16
    one_call, cache_one_call, batched, cache_batched, cache_before = both_paths(engine, prefilled(engine, PROMPTS[2]))
    written = (cache_one_call != cache_before).float().sum()
    assert written > 0 and (cache_one_call != cache_batched).float().sum() <= 0.02 * written
    torch.testing.assert_close(cache_one_call, cache_batched, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(one_call, batched, rtol=0, atol=0.05)
    assert (one_call != batched).float().mean() <= 0.05
    assert one_call.argmax() == batched.argmax()
    engine.abort("r")
    assert_engine_idle(engine)


def test_bfloat16_generation_through_the_one_call_path_matches_the_batched_engine(tiny_llama):
    requests = lambda: [GenerationRequest(f"b{i}", p, SamplingParams(max_tokens=10, temperature=0.0))  # noqa: E731
                        for i, p in enumerate(PROMPTS[:3])]
    batched = LLMEngine(tiny_llama, EngineConfig(block_size=4, num_kv_blocks=64), dtype=torch.bfloat16)
    one_call = LLMEngine(tiny_llama, EngineConfig(block_size=4, num_kv_blocks=64, single_decode="on"),
                         dtype=torch.bfloat16)
    counts = count_one_call_tokens(one_call)
    for request in requests():  # one at a time, so every decode is a single-sequence step
        assert one_call.generate([request]) == batched.generate([request])
    assert sum(counts) == 3 * 9
    assert_engine_idle(one_call)


@pytest.mark.parametrize("settings, dtype, message", [
    (dict(quantization="int4"), torch.bfloat16, "int4 weights it runs float32 activations"),
    (dict(quantization="int8"), torch.bfloat16, "int8 weights it runs float32 activations"),
    (dict(attention="torch"), torch.float32, "C attention kernel"),
    ({}, torch.float16, "float32 or bfloat16"),
], ids=["int4-bfloat16", "int8-bfloat16", "torch-attention", "float16"])
def test_single_decode_on_where_it_cannot_apply_is_refused_by_name(tiny_llama, settings, dtype, message):
    with pytest.raises(ValueError, match=f"single_decode 'on' does not apply here: .*{message}"):
        LLMEngine(tiny_llama, EngineConfig(num_kv_blocks=16, single_decode="on", **settings), dtype=dtype)


def test_an_unknown_single_decode_mode_is_refused():
    with pytest.raises(ValueError, match="single_decode must be one of"):
        EngineConfig(single_decode="always")
