"""The engine's greedy tokens equal HF `generate` under batching, chunking, caching and preemption."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from chatstack.backends.base import FinishReason, GenerationRequest, SamplingParams
from chatstack.engine.config import EngineConfig
from chatstack.engine.llm_engine import LLMEngine
from tests.unit.engine.helpers import MAX_NEW, PROMPTS, assert_engine_idle, hf_greedy, save_random_llama

GREEDY = SamplingParams(max_tokens=MAX_NEW, temperature=0.0)
DEMO_MODEL = Path(__file__).resolve().parents[3] / "artifacts" / "demo-model"


def request(request_id: str, prompt, sampling: SamplingParams = GREEDY) -> GenerationRequest:
    return GenerationRequest(request_id, tuple(prompt), sampling)


def make_engine(model_dir, **overrides) -> LLMEngine:
    settings = dict(block_size=4, num_kv_blocks=256, max_num_seqs=8, max_num_batched_tokens=64) | overrides
    return LLMEngine(model_dir, EngineConfig(**settings))


ATTENTION = pytest.mark.parametrize("attention", ["kernel", "torch"])  # the C decode kernel and the SDPA path


@ATTENTION
@pytest.mark.parametrize("prompt", PROMPTS)
def test_single_request_matches_hf(tiny_llama, references, prompt, attention):
    engine = make_engine(tiny_llama, attention=attention)
    assert engine.generate([request("only", prompt)])["only"] == references[prompt]
    assert_engine_idle(engine)


@ATTENTION
def test_batch_with_requests_arriving_mid_flight_matches_hf(tiny_llama, references, attention):
    engine = make_engine(tiny_llama, max_num_batched_tokens=16, attention=attention)  # the 45-token prompt is chunked
    arrivals = {0: [0, 1], 3: [2], 7: [3, 0]}  # step -> indices into PROMPTS
    tokens: dict[str, list[int]] = {}
    prompts: dict[str, tuple[int, ...]] = {}
    step = 0
    while step <= max(arrivals) or engine.has_unfinished():
        for index in arrivals.get(step, []):
            request_id = f"step{step}-prompt{index}"
            prompts[request_id], tokens[request_id] = PROMPTS[index], []
            engine.add_request(request(request_id, PROMPTS[index]))
        for result in engine.step():
            tokens[result.request_id].extend(result.new_token_ids)
        step += 1
    assert len(tokens) == 5
    for request_id, prompt in prompts.items():
        assert tokens[request_id] == references[prompt], request_id
    assert_engine_idle(engine)


def test_prefix_cached_run_matches_the_uncached_one(tiny_llama, references):
    engine = make_engine(tiny_llama)
    prompt = PROMPTS[2]
    first = engine.generate([request("cold", prompt)])["cold"]
    engine.add_request(request("warm", prompt))
    warm_seq = engine.sequences["warm"]
    tokens = []
    while engine.has_unfinished():
        tokens.extend(t for r in engine.step() for t in r.new_token_ids)
    assert warm_seq.num_cached_tokens == 44  # 11 full blocks of the 45-token prompt
    assert tokens == first == references[prompt]
    assert_engine_idle(engine)


def test_next_turn_reuses_the_previous_turn_and_matches_hf(tiny_llama):
    engine = make_engine(tiny_llama)
    turn1 = list(PROMPTS[1])
    turn2 = turn1 + engine.generate([request("turn1", turn1)])["turn1"] + [9, 8, 7]
    engine.add_request(request("turn2", turn2))
    seq = engine.sequences["turn2"]
    tokens = []
    while engine.has_unfinished():
        tokens.extend(t for r in engine.step() for t in r.new_token_ids)
    assert seq.num_cached_tokens == 40
    assert tokens == hf_greedy(tiny_llama, turn2, MAX_NEW)
    assert_engine_idle(engine)


@ATTENTION
def test_preempted_and_resumed_sequences_match_hf(tiny_llama, references, attention):
    # the 4 requests need 34 blocks to run together; a pool of 18, every request admitted while blocks last (no
    # admission lookahead), forces recompute preemption
    engine = make_engine(tiny_llama, num_kv_blocks=18, enable_prefix_caching=False, attention=attention,
                         admission_lookahead=0)
    prompts = PROMPTS[:2] + PROMPTS[3:] + PROMPTS[:1]
    outputs = engine.generate([request(f"r{i}", p) for i, p in enumerate(prompts)])
    assert engine.scheduler.num_preemptions > 0
    for i, prompt in enumerate(prompts):
        assert outputs[f"r{i}"] == references[prompt]
    assert_engine_idle(engine)


def test_admission_lookahead_runs_the_same_requests_in_that_pool_without_preemption(tiny_llama, references):
    engine = make_engine(tiny_llama, num_kv_blocks=18, enable_prefix_caching=False)
    prompts = PROMPTS[:2] + PROMPTS[3:] + PROMPTS[:1]
    outputs = engine.generate([request(f"r{i}", p) for i, p in enumerate(prompts)])
    assert engine.scheduler.num_preemptions == 0
    for i, prompt in enumerate(prompts):
        assert outputs[f"r{i}"] == references[prompt]
    assert_engine_idle(engine)


def test_abort_frees_blocks_at_once_and_others_are_unaffected(tiny_llama, references):
    engine = make_engine(tiny_llama)
    engine.add_request(request("keep", PROMPTS[0]))
    engine.add_request(request("drop", PROMPTS[2]))
    tokens = []
    for _ in range(3):
        tokens.extend(t for r in engine.step() if r.request_id == "keep" for t in r.new_token_ids)
    used_before = engine.scheduler.block_manager.num_free_blocks
    assert engine.abort("drop") and not engine.abort("drop")
    assert engine.scheduler.block_manager.num_free_blocks > used_before
    while engine.has_unfinished():
        tokens.extend(t for r in engine.step() for t in r.new_token_ids)
    assert tokens == references[PROMPTS[0]]
    assert_engine_idle(engine)


def test_stop_token_ends_the_request_without_emitting_it(tiny_llama, references):
    expected = references[PROMPTS[1]]
    position = next(i for i, t in enumerate(expected) if t not in expected[:i] and i >= 2)
    engine = make_engine(tiny_llama)
    engine.add_request(GenerationRequest("stop", PROMPTS[1], GREEDY, (expected[position],)))
    results = []
    while engine.has_unfinished():
        results.extend(engine.step())
    assert [t for r in results for t in r.new_token_ids] == expected[:position]
    assert results[-1].finish_reason is FinishReason.STOP
    assert_engine_idle(engine)


@pytest.mark.parametrize("variant", [
    dict(tie_word_embeddings=True, num_key_value_heads=4),
    dict(rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}),
    dict(rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                          "high_freq_factor": 4.0, "original_max_position_embeddings": 32}),
], ids=["tied-mha", "linear-rope", "llama3-rope"])
def test_config_variants_match_hf(tmp_path, variant):
    model_dir = save_random_llama(tmp_path, seed=1, num_hidden_layers=2, **variant)
    prompt = PROMPTS[2]
    engine = make_engine(model_dir)
    assert engine.generate([request("v", prompt, SamplingParams(max_tokens=12, temperature=0.0))])["v"] == \
        hf_greedy(model_dir, prompt, 12)
    assert_engine_idle(engine)


def test_demo_model_matches_hf():
    if not (DEMO_MODEL / "model.safetensors").exists():  # checked at run time: `make test` builds it first
        pytest.skip("artifacts/demo-model is not built")
    engine = make_engine(DEMO_MODEL, block_size=16)
    prompts = [tuple(range(1, 40)), (1, 500, 600, 700, 42)]
    outputs = engine.generate([request(f"demo{i}", p) for i, p in enumerate(prompts)])
    for i, prompt in enumerate(prompts):
        assert outputs[f"demo{i}"] == hf_greedy(DEMO_MODEL, prompt, MAX_NEW)
    assert_engine_idle(engine)


@pytest.mark.parametrize("prompt, max_tokens, match", [
    ((), 4, "^prompt_token_ids must not be empty"),
    (PROMPTS[2], 250, "^max_tokens 250 cannot fit: .* context window of 256"),
    (PROMPTS[2], 200, "^max_tokens 200 cannot fit: .* KV cache of 128"),
], ids=["empty", "over-context", "over-kv-pool"])
def test_engine_rejects_requests_that_can_never_run(tiny_llama, prompt, max_tokens, match):
    engine = make_engine(tiny_llama, num_kv_blocks=32)
    with pytest.raises(ValueError, match=match):
        engine.add_request(request("bad", prompt, SamplingParams(max_tokens=max_tokens)))
    assert_engine_idle(engine)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_engine_serves_and_float32_matches_hf(tiny_llama, references, dtype):
    """`compile=True` traces plain matmuls: every step runs (a bf16 step once failed on a prepacked weight)."""
    engine = LLMEngine(tiny_llama, EngineConfig(block_size=4, num_kv_blocks=256, max_num_seqs=8,
                                                max_num_batched_tokens=64, compile=True), dtype=dtype)
    for i, prompt in enumerate(PROMPTS):
        engine.add_request(request(f"c{i}", prompt))
    tokens: dict[str, list[int]] = {f"c{i}": [] for i in range(len(PROMPTS))}
    while engine.has_unfinished():
        for result in engine.step():
            assert result.error is None, result.error
            tokens[result.request_id].extend(result.new_token_ids)
    assert all(len(t) == MAX_NEW for t in tokens.values())
    if dtype == torch.float32:
        assert [tokens[f"c{i}"] for i in range(len(PROMPTS))] == [references[p] for p in PROMPTS]
    assert_engine_idle(engine)
