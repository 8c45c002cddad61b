"""The GenerationBackend contract, one suite run against both backends (HF baseline and native).

Each case runs on the same tiny random Llama; greedy references come from HF `generate`.
Backend-specific behaviour stays in test_hf_backend.py / test_native_backend.py.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from chatstack.backends.base import FinishReason, GenerationBackend, GenerationRequest, SamplingParams
from chatstack.backends.copy_constraint import CopyConstraint, CopySource, CopyTracker
from chatstack.backends.hf import HFBackend
from chatstack.backends.native import NativeBackend
from chatstack.engine.config import EngineConfig
from tests.unit import backend_contract as contract
from tests.unit.engine.helpers import CONTEXT, MAX_NEW, PROMPTS, VOCAB, assert_engine_idle, one_torch_thread

GREEDY = SamplingParams(max_tokens=MAX_NEW, temperature=0.0)
SMALL_POOL = EngineConfig(block_size=8, num_kv_blocks=64, max_num_seqs=8, max_num_batched_tokens=64, max_logprobs=5)
BACKENDS = ("hf", "native")


def make_backend(kind: str, model_dir: Path, engine_config: EngineConfig = SMALL_POOL) -> GenerationBackend:
    if kind == "hf":
        return HFBackend(model_dir, max_logprobs=engine_config.max_logprobs)
    return NativeBackend(model_dir, engine_config=engine_config)


def wait_idle(backend: GenerationBackend, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while backend.active_requests() and time.monotonic() < deadline:
        time.sleep(0.01)
    if isinstance(backend, NativeBackend):
        while backend.engine.has_unfinished() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert_engine_idle(backend.engine)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request, tiny_llama):
    backend = make_backend(request.param, tiny_llama)
    yield backend
    wait_idle(backend)
    backend.shutdown()


def run(backend, request_id: str, prompt, sampling: SamplingParams = GREEDY, stop_token_ids=()):
    return contract.run(backend, request_id, prompt, sampling, stop_token_ids)


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
    assert all(o.request_id == "shape" and o.logprobs == () for o in outputs)


def test_coalesced_stream_merges_what_is_waiting(backend, references):
    """A reader that fell behind gets the waiting tokens (and their logprobs) in one output."""
    sampling = SamplingParams(max_tokens=MAX_NEW, temperature=0.0, logprobs=2)
    backend.submit(GenerationRequest("behind", PROMPTS[0], sampling))
    wait_idle(backend)  # every output is queued, none read
    (output,) = list(backend.stream("behind", coalesce=True))
    assert list(output.new_token_ids) == references[PROMPTS[0]]
    assert output.finish_reason is FinishReason.LENGTH
    assert [r.token_id for r in output.logprobs] == list(output.new_token_ids)


def test_stop_token_ends_with_stop_and_is_not_emitted(backend, references):
    expected = references[PROMPTS[0]]
    position = next(i for i, t in enumerate(expected) if i >= 3 and t not in expected[:i])
    tokens, last = run(backend, "stop", PROMPTS[0], stop_token_ids=(expected[position],))
    assert tokens == expected[:position] and last.finish_reason is FinishReason.STOP


def test_ignore_eos_generates_through_stop_tokens(backend, references):
    expected = references[PROMPTS[0]]
    sampling = SamplingParams(max_tokens=MAX_NEW, temperature=0.0, ignore_eos=True)
    tokens, last = run(backend, "ignore-eos", PROMPTS[0], sampling, stop_token_ids=(expected[3],))
    assert tokens == expected and last.finish_reason is FinishReason.LENGTH


@pytest.mark.parametrize("kind", BACKENDS)
def test_cancel_mid_stream_ends_with_cancelled(kind, tiny_llama, tmp_path):
    # a copy with a long context, so the request could run for thousands of tokens if cancel failed
    long_dir = tmp_path / "long-context"
    shutil.copytree(tiny_llama, long_dir)
    config = json.loads((long_dir / "config.json").read_text())
    (long_dir / "config.json").write_text(json.dumps(config | {"max_position_embeddings": 4096}))
    backend = make_backend(kind, long_dir, EngineConfig(block_size=16, num_kv_blocks=300))
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
    assert backend.active_requests() == 0
    backend.shutdown()


def test_unknown_ids_are_ignored_by_cancel_and_rejected_by_stream(backend):
    backend.cancel("never-submitted")
    with pytest.raises(KeyError):
        next(backend.stream("never-submitted"))


@pytest.mark.parametrize("prompt, sampling, match", [
    (tuple(range(100)), SamplingParams(max_tokens=CONTEXT - 99), "^text_input"),
    ((), GREEDY, "^text_input"),
    (PROMPTS[0], SamplingParams(max_tokens=4, logprobs=6), "^logprobs must be at most 5"),
], ids=["over-context", "empty", "logprobs-over-the-configured-max"])
def test_bad_requests_are_rejected_before_admission(backend, prompt, sampling, match):
    with pytest.raises(ValueError, match=match):
        backend.submit(GenerationRequest("bad", prompt, sampling))
    assert backend.active_requests() == 0


def test_request_that_exactly_fills_the_context_window(backend):
    prompt = [i % VOCAB for i in range(100)]
    tokens, last = run(backend, "exact", prompt, SamplingParams(max_tokens=CONTEXT - 100, temperature=0.0))
    assert len(tokens) == CONTEXT - 100 and last.finish_reason is FinishReason.LENGTH


def test_same_seed_same_tokens_different_seed_different_tokens(backend):
    def sampled(request_id: str, seed: int) -> list[int]:
        params = SamplingParams(max_tokens=16, temperature=1.5, min_p=0.01, presence_penalty=0.5, seed=seed)
        return run(backend, request_id, PROMPTS[1], params)[0]

    first = sampled("seed-a", 11)
    assert sampled("seed-b", 11) == first
    assert sampled("seed-c", 12) != first


def test_duplicate_running_request_id_is_rejected(backend):
    backend.submit(GenerationRequest("dup", PROMPTS[0], SamplingParams(max_tokens=200, temperature=0.0)))
    with pytest.raises(ValueError, match="already running"):
        backend.submit(GenerationRequest("dup", PROMPTS[1], GREEDY))
    backend.cancel("dup")
    assert list(backend.stream("dup"))[-1].finish_reason in (FinishReason.CANCELLED, FinishReason.LENGTH)


def test_a_finished_request_nobody_streamed_can_be_dropped_and_its_id_reused(backend, references):
    backend.submit(GenerationRequest("unread", PROMPTS[0], GREEDY))
    wait_idle(backend)
    backend.cancel("unread")  # drops the unread outputs
    with pytest.raises(KeyError):
        next(backend.stream("unread"))
    tokens, last = run(backend, "unread", PROMPTS[0])
    assert tokens == references[PROMPTS[0]] and last.finish_reason is FinishReason.LENGTH


def test_concurrent_requests_all_finish_with_their_own_tokens(backend, references):
    jobs = {f"concurrent-{i}": PROMPTS[i % len(PROMPTS)] for i in range(6)}
    results = contract.run_concurrently(backend, jobs, GREEDY)
    assert sorted(results) == sorted(jobs)
    for request_id, prompt in jobs.items():
        tokens, last = results[request_id]
        assert tokens == references[prompt], request_id  # interleaving never mixes requests' caches
        assert last.finish_reason is FinishReason.LENGTH
    wait_idle(backend)


# -- penalties and logprobs: the same fields on both backends -------------------------------

@pytest.fixture(scope="module")
def penalised_reference(tiny_llama) -> list[int]:
    """HF `generate` greedy with its own repetition penalty, independent of both backends."""
    model = LlamaForCausalLM.from_pretrained(tiny_llama).eval()
    input_ids = torch.tensor([list(PROMPTS[1])])  # (1, T); the prompt repeats token 3
    with torch.inference_mode(), one_torch_thread():
        output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                                repetition_penalty=1.5, max_new_tokens=MAX_NEW, min_new_tokens=MAX_NEW,
                                eos_token_id=None)
    return output[0, len(PROMPTS[1]):].tolist()


def test_repetition_penalised_greedy_matches_hf_generate(backend, references, penalised_reference):
    assert penalised_reference != references[PROMPTS[1]]  # the penalty changes this continuation
    tokens, _ = run(backend, "repetition", PROMPTS[1], SamplingParams(max_tokens=MAX_NEW, temperature=0.0,
                                                                     repetition_penalty=1.5))
    assert tokens == penalised_reference


def test_presence_and_frequency_penalised_greedy_spreads_over_more_tokens(backend, references):
    tokens, _ = run(backend, "frequency", PROMPTS[1], SamplingParams(max_tokens=MAX_NEW, temperature=0.0,
                                                                    frequency_penalty=2.0, presence_penalty=2.0))
    assert tokens != references[PROMPTS[1]]
    assert len(set(tokens)) > len(set(references[PROMPTS[1]]))


def test_logprobs_come_with_every_token(backend):
    params = SamplingParams(max_tokens=6, temperature=0.0, logprobs=3)
    backend.submit(GenerationRequest("logprobs", PROMPTS[0], params))
    outputs = [o for o in backend.stream("logprobs") if o.new_token_ids]
    assert len(outputs) == 6
    for output in outputs:
        (report,) = output.logprobs
        assert report.token_id == output.new_token_ids[0]
        assert len(report.top) == 3 and report.top[0][0] == report.token_id  # greedy: the top token
        assert report.logprob <= 0 and [lp for _, lp in report.top] == sorted((lp for _, lp in report.top), reverse=True)


def test_both_backends_give_the_same_tokens_and_logprobs(tiny_llama):
    params = SamplingParams(max_tokens=10, temperature=0.8, top_k=40, min_p=0.02, repetition_penalty=1.2,
                            frequency_penalty=0.3, seed=7, logprobs=2)
    runs = {}
    for kind in BACKENDS:
        backend = make_backend(kind, tiny_llama)
        backend.submit(GenerationRequest("same", PROMPTS[2], params))
        runs[kind] = [o for o in backend.stream("same") if o.new_token_ids]
        backend.shutdown()
    hf, native = runs["hf"], runs["native"]
    assert [o.new_token_ids for o in hf] == [o.new_token_ids for o in native]
    for a, b in zip(hf, native):
        assert math.isclose(a.logprobs[0].logprob, b.logprobs[0].logprob, abs_tol=1e-4)
        assert [t for t, _ in a.logprobs[0].top] == [t for t, _ in b.logprobs[0].top]


def test_quote_bound_requests_follow_their_source_the_same_on_both_backends(tiny_llama):
    """Source: tokens 0..249 in order, sentences ending at every tenth: once quoting binds, each next
    token is the previous + 1 until a sentence end lets the model cite (254, 255) or go on."""
    source = CopySource(tuple(range(250)), frozenset(range(9, 250, 10)), (254, 255))
    constraint = CopyConstraint((source,), enter_after=1)
    params = SamplingParams(max_tokens=MAX_NEW, temperature=0.0, frequency_penalty=0.5)
    runs = {}
    for kind in BACKENDS:
        backend = make_backend(kind, tiny_llama)
        backend.submit(GenerationRequest("quote", PROMPTS[1], params, (), constraint))
        runs[kind] = [t for o in backend.stream("quote") for t in o.new_token_ids]
        wait_idle(backend)
        backend.shutdown()
    assert runs["hf"] == runs["native"]
    tokens, tracker, bound = runs["native"], CopyTracker(constraint, ()), 0
    for k, token in enumerate(tokens):
        tracker.sync(tokens[:k])
        allowed = tracker.allowed()
        if allowed is not None:
            assert token in allowed
            bound += 1
    assert bound >= MAX_NEW // 2
