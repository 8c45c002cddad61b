"""NativeBackend beyond the shared contract (test_backend_contract.py): engine-level validation,
KV-pool limits, a failing step, shutdown."""

from __future__ import annotations

import time

import pytest

from chatstack.backends.base import FinishReason, GenerationRequest, SamplingParams
from chatstack.backends.native import NativeBackend
from chatstack.engine.config import EngineConfig
from tests.unit import backend_contract as contract
from tests.unit.engine.helpers import MAX_NEW, PROMPTS, VOCAB, assert_engine_idle

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


@pytest.mark.parametrize("prompt, sampling, stop, match", [
    ((1, VOCAB + 50), GREEDY, (), "^prompt_token_ids"),
    (PROMPTS[0], GREEDY, (VOCAB,), "^stop_token_ids"),
], ids=["id-outside-vocab", "unknown-stop-id"])
def test_bad_requests_are_rejected_before_admission(backend, prompt, sampling, stop, match):
    with pytest.raises(ValueError, match=match):
        backend.submit(GenerationRequest("bad", prompt, sampling, stop))
    assert backend.active_requests() == 0


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


def test_shutdown_ends_open_streams_with_cancelled(tiny_llama):
    backend = NativeBackend(tiny_llama, engine_config=SMALL_POOL)
    backend.submit(GenerationRequest("open", PROMPTS[0], SamplingParams(max_tokens=200, temperature=0.0)))
    backend.shutdown()
    assert list(backend.stream("open"))[-1].finish_reason is FinishReason.CANCELLED
    assert_engine_idle(backend.engine)


def test_logprobs_over_the_engine_max_are_rejected_and_the_max_is_validated(tiny_llama):
    with pytest.raises(ValueError, match="^max_logprobs"):
        EngineConfig(max_logprobs=21)
    backend = NativeBackend(tiny_llama, engine_config=EngineConfig(block_size=8, num_kv_blocks=64, max_logprobs=0))
    with pytest.raises(ValueError, match="^logprobs must be at most 0"):
        backend.submit(GenerationRequest("lp", PROMPTS[0], SamplingParams(max_tokens=2, logprobs=1)))
    tokens, last = run(backend, "lp0", PROMPTS[0], SamplingParams(max_tokens=2, temperature=0.0, logprobs=0))
    assert len(tokens) == 2 and last.finish_reason is FinishReason.LENGTH
    backend.shutdown()
