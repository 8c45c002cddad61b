"""NativeBackend: the GenerationBackend contract, with the same semantics as the HF backend."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from chatstack.backends.base import FinishReason, GenerationRequest, SamplingParams
from chatstack.backends.hf import HFBackend
from chatstack.backends.native import NativeBackend
from chatstack.engine.config import EngineConfig
from tests.unit import backend_contract as contract
from tests.unit.engine.helpers import CONTEXT, MAX_NEW, PROMPTS, VOCAB, assert_engine_idle

GREEDY = SamplingParams(max_tokens=MAX_NEW, temperature=0.0)
SMALL_POOL = EngineConfig(block_size=8, num_kv_blocks=64, max_num_seqs=8, max_num_batched_tokens=64)


@pytest.fixture(scope="module")
def backend(tiny_llama):
    backend = NativeBackend(tiny_llama, engine_config=SMALL_POOL)
    yield backend
    backend.shutdown()
    assert_engine_idle(backend.engine)


def run(backend, request_id: str, prompt, sampling: SamplingParams = GREEDY, stop_token_ids=()):
    return contract.run(backend, request_id, prompt, sampling, stop_token_ids)


def wait_idle(backend, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while (backend.active_requests() or backend.engine.has_unfinished()) and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.parametrize("prompt", PROMPTS[:2])
def test_greedy_matches_hf_generate(backend, references, prompt):
    tokens, last = run(backend, f"greedy-{len(prompt)}", prompt)
    assert tokens == references[prompt]
    assert last.finish_reason is FinishReason.LENGTH and last.error is None


def test_streams_one_token_per_output_then_a_final_empty_one(backend):
    backend.submit(GenerationRequest("shape", PROMPTS[0], SamplingParams(max_tokens=4, temperature=0.0)))
    outputs = list(backend.stream("shape"))
    assert [len(o.new_token_ids) for o in outputs] == [1, 1, 1, 1, 0]
    assert [o.finish_reason for o in outputs] == [None] * 4 + [FinishReason.LENGTH]


def test_ignore_eos_generates_through_stop_tokens(backend, references):
    expected = references[PROMPTS[0]]
    sampling = SamplingParams(max_tokens=MAX_NEW, temperature=0.0, ignore_eos=True)
    tokens, last = run(backend, "ignore-eos", PROMPTS[0], sampling, stop_token_ids=(expected[3],))
    assert tokens == expected and last.finish_reason is FinishReason.LENGTH


def test_seeded_sampling_is_reproducible_and_matches_the_hf_backend(backend, tiny_llama):
    def sampled(b, request_id: str, seed: int) -> list[int]:
        return run(b, request_id, PROMPTS[1], SamplingParams(max_tokens=12, temperature=1.5, top_k=50,
                                                              top_p=0.9, seed=seed))[0]

    first = sampled(backend, "seed-a", 11)
    assert sampled(backend, "seed-b", 11) == first
    assert sampled(backend, "seed-c", 12) != first
    assert sampled(HFBackend(tiny_llama), "seed-hf", 11) == first


def test_cancel_mid_stream_ends_with_cancelled_and_frees_blocks(tiny_llama, tmp_path):
    long_dir = tmp_path / "long-context"
    shutil.copytree(tiny_llama, long_dir)
    config = json.loads((long_dir / "config.json").read_text())
    (long_dir / "config.json").write_text(json.dumps(config | {"max_position_embeddings": 4096}))
    backend = NativeBackend(long_dir, engine_config=EngineConfig(block_size=16, num_kv_blocks=300))
    max_tokens = 4000
    backend.submit(GenerationRequest("long", PROMPTS[0], SamplingParams(max_tokens=max_tokens, temperature=0.0)))
    tokens: list[int] = []
    for output in backend.stream("long"):
        tokens.extend(output.new_token_ids)
        if len(tokens) == 3:
            backend.cancel("long")
    assert output.finish_reason is FinishReason.CANCELLED
    assert 3 <= len(tokens) < max_tokens
    wait_idle(backend)
    assert_engine_idle(backend.engine)
    backend.shutdown()


def test_unknown_ids_are_ignored_by_cancel_and_rejected_by_stream(backend):
    backend.cancel("never-submitted")
    with pytest.raises(KeyError):
        next(backend.stream("never-submitted"))


@pytest.mark.parametrize("prompt, sampling, stop, match", [
    (tuple(range(100)), SamplingParams(max_tokens=CONTEXT - 99), (), "^text_input"),
    ((), GREEDY, (), "^text_input"),
    ((1, VOCAB + 50), GREEDY, (), "^prompt_token_ids"),
    (PROMPTS[0], GREEDY, (VOCAB,), "^stop_token_ids"),
], ids=["over-context", "empty", "id-outside-vocab", "unknown-stop-id"])
def test_bad_requests_are_rejected_before_admission(backend, prompt, sampling, stop, match):
    with pytest.raises(ValueError, match=match):
        backend.submit(GenerationRequest("bad", prompt, sampling, stop))
    assert backend.active_requests() == 0


def test_request_that_exactly_fills_the_context_window(backend):
    prompt = [i % VOCAB for i in range(100)]
    tokens, last = run(backend, "exact", prompt, SamplingParams(max_tokens=CONTEXT - 100, temperature=0.0))
    assert len(tokens) == CONTEXT - 100 and last.finish_reason is FinishReason.LENGTH


def test_max_tokens_that_cannot_fit_the_kv_pool_is_rejected(tiny_llama):
    backend = NativeBackend(tiny_llama, engine_config=EngineConfig(block_size=4, num_kv_blocks=8))
    with pytest.raises(ValueError, match="^max_tokens 30 cannot fit"):
        backend.submit(GenerationRequest("huge", PROMPTS[0], SamplingParams(max_tokens=30)))
    tokens, last = run(backend, "fits", PROMPTS[0], SamplingParams(max_tokens=27, temperature=0.0))
    assert len(tokens) == 27 and last.finish_reason is FinishReason.LENGTH
    backend.shutdown()


def test_a_failing_step_ends_its_requests_with_an_error_and_the_engine_keeps_serving(tiny_llama, references):
    backend = NativeBackend(tiny_llama, engine_config=SMALL_POOL)
    real_run = backend.engine.runner.run
    calls = iter([RuntimeError("boom")])

    def failing_once(output):
        error = next(calls, None)
        if error is not None:
            raise error
        return real_run(output)

    backend.engine.runner.run = failing_once
    tokens, last = run(backend, "fails", PROMPTS[0])
    assert tokens == [] and last.finish_reason is FinishReason.ERROR and "boom" in last.error
    assert run(backend, "works", PROMPTS[0])[0] == references[PROMPTS[0]]
    wait_idle(backend)
    assert_engine_idle(backend.engine)
    backend.shutdown()


def test_duplicate_running_request_id_is_rejected(tiny_llama):
    backend = NativeBackend(tiny_llama, engine_config=SMALL_POOL)
    backend.submit(GenerationRequest("dup", PROMPTS[0], SamplingParams(max_tokens=200, temperature=0.0)))
    with pytest.raises(ValueError, match="already running"):
        backend.submit(GenerationRequest("dup", PROMPTS[1], GREEDY))
    backend.cancel("dup")
    assert list(backend.stream("dup"))[-1].finish_reason is FinishReason.CANCELLED
    backend.shutdown()


def test_a_finished_request_nobody_streamed_can_be_dropped_and_its_id_reused(backend, references):
    backend.submit(GenerationRequest("unread", PROMPTS[0], GREEDY))
    wait_idle(backend)
    backend.cancel("unread")
    with pytest.raises(KeyError):
        next(backend.stream("unread"))
    tokens, last = run(backend, "unread", PROMPTS[0])
    assert tokens == references[PROMPTS[0]] and last.finish_reason is FinishReason.LENGTH


def test_concurrent_requests_all_finish_with_their_own_tokens(backend, references):
    jobs = {f"concurrent-{i}": PROMPTS[i % len(PROMPTS)] for i in range(8)}
    results = contract.run_concurrently(backend, jobs, GREEDY)
    assert sorted(results) == sorted(jobs)
    for request_id, prompt in jobs.items():
        tokens, last = results[request_id]
        assert tokens == references[prompt] and last.finish_reason is FinishReason.LENGTH
    wait_idle(backend)
    assert backend.active_requests() == 0
    assert_engine_idle(backend.engine)


def test_shutdown_ends_open_streams_with_cancelled(tiny_llama):
    backend = NativeBackend(tiny_llama, engine_config=SMALL_POOL)
    backend.submit(GenerationRequest("open", PROMPTS[0], SamplingParams(max_tokens=200, temperature=0.0)))
    backend.shutdown()
    assert list(backend.stream("open"))[-1].finish_reason is FinishReason.CANCELLED
    assert_engine_idle(backend.engine)
