"""The HF baseline backend on a randomly initialised 2-layer Llama saved to disk."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from chatstack.backends.base import FinishReason, GenerationOutput, GenerationRequest, SamplingParams
from chatstack.backends.hf import HFBackend
from tests.unit import backend_contract as contract

CONTEXT = 128
VOCAB = 128
PROMPTS = [(5, 17, 33, 2, 9), (100, 3, 3, 3, 64, 1, 0, 127, 42, 7, 8)]
GREEDY = SamplingParams(max_tokens=24, temperature=0.0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=CONTEXT,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,  # no eos: generation runs to max_tokens
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def backend(model_dir):
    backend = HFBackend(model_dir)
    yield backend
    backend.shutdown()


@pytest.fixture(scope="module")
def reference(model_dir):
    """`model.generate` greedy continuations of PROMPTS, computed independently of the backend."""
    model = LlamaForCausalLM.from_pretrained(model_dir).eval()
    continuations = {}
    for prompt in PROMPTS:
        input_ids = torch.tensor([prompt])  # (1, T)
        output = model.generate(
            input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
            max_new_tokens=GREEDY.max_tokens, eos_token_id=None,
        )  # (1, T + max_new_tokens)
        continuations[prompt] = tuple(output[0, len(prompt):].tolist())
    return continuations


def run(backend: HFBackend, request_id: str, prompt, sampling: SamplingParams, stop_token_ids=()) -> tuple[list[int], GenerationOutput]:
    return contract.run(backend, request_id, prompt, sampling, stop_token_ids)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_matches_model_generate(backend, reference, prompt):
    tokens, last = run(backend, f"greedy-{len(prompt)}", prompt, GREEDY)
    assert tuple(tokens) == reference[prompt]
    assert last.finish_reason is FinishReason.LENGTH and last.error is None


def test_streams_one_token_per_output_then_a_final_empty_one(backend):
    backend.submit(GenerationRequest("shape", PROMPTS[0], SamplingParams(max_tokens=4, temperature=0.0)))
    outputs = list(backend.stream("shape"))
    assert [len(o.new_token_ids) for o in outputs] == [1, 1, 1, 1, 0]
    assert [o.finish_reason for o in outputs] == [None] * 4 + [FinishReason.LENGTH]
    assert all(o.request_id == "shape" for o in outputs)


def test_stop_token_ends_with_stop_and_is_not_emitted(backend, reference):
    expected = reference[PROMPTS[0]]
    position = next(i for i, t in enumerate(expected) if i >= 3 and t not in expected[:i])
    tokens, last = run(backend, "stop", PROMPTS[0], GREEDY, stop_token_ids=(expected[position],))
    assert tuple(tokens) == expected[:position]
    assert last.finish_reason is FinishReason.STOP


def test_ignore_eos_generates_through_stop_tokens(backend, reference):
    expected = reference[PROMPTS[0]]
    sampling = SamplingParams(max_tokens=GREEDY.max_tokens, temperature=0.0, ignore_eos=True)
    tokens, last = run(backend, "ignore-eos", PROMPTS[0], sampling, stop_token_ids=(expected[3],))
    assert tuple(tokens) == expected and last.finish_reason is FinishReason.LENGTH


def test_cancel_mid_stream_ends_with_cancelled(model_dir, tmp_path):
    # a copy with a long context, so the request could run for thousands of tokens if cancel failed
    long_dir = tmp_path / "long-context"
    shutil.copytree(model_dir, long_dir)
    config = json.loads((long_dir / "config.json").read_text())
    (long_dir / "config.json").write_text(json.dumps(config | {"max_position_embeddings": 4096}))
    backend = HFBackend(long_dir)
    max_tokens = 4000
    backend.submit(GenerationRequest("long", PROMPTS[0], SamplingParams(max_tokens=max_tokens, temperature=0.0)))
    tokens: list[int] = []
    for output in backend.stream("long"):
        tokens.extend(output.new_token_ids)
        if len(tokens) == 3:
            backend.cancel("long")
    assert output.finish_reason is FinishReason.CANCELLED
    assert 3 <= len(tokens) < max_tokens
    assert backend.active_requests() == 0


def test_cancel_of_an_unknown_request_is_ignored(backend):
    backend.cancel("never-submitted")


def test_stream_of_an_unknown_request_raises(backend):
    with pytest.raises(KeyError):
        next(backend.stream("never-submitted"))


def test_prompt_plus_max_tokens_over_the_context_window(backend):
    with pytest.raises(ValueError, match="^text_input") as info:
        backend.submit(GenerationRequest("too-long", tuple(range(100)), SamplingParams(max_tokens=CONTEXT - 99)))
    assert str(CONTEXT) in str(info.value)
    assert backend.active_requests() == 0


def test_request_that_exactly_fills_the_context_window(backend):
    prompt = [i % VOCAB for i in range(100)]
    tokens, last = run(backend, "exact", prompt, SamplingParams(max_tokens=CONTEXT - 100, temperature=0.0))
    assert len(tokens) == CONTEXT - 100 and last.finish_reason is FinishReason.LENGTH


def test_empty_prompt_is_rejected(backend):
    with pytest.raises(ValueError, match="^text_input"):
        backend.submit(GenerationRequest("empty", (), GREEDY))


def test_a_failing_forward_ends_the_stream_with_an_error(backend):
    tokens, last = run(backend, "bad-id", (1, VOCAB + 50), GREEDY)  # id outside the embedding table
    assert tokens == []
    assert last.finish_reason is FinishReason.ERROR and last.error
    assert backend.active_requests() == 0


def test_same_seed_same_tokens_different_seed_different_tokens(backend):
    def sampled(request_id: str, seed: int) -> list[int]:
        return run(backend, request_id, PROMPTS[0], SamplingParams(max_tokens=20, temperature=5.0, seed=seed))[0]

    first = sampled("seed-a", 11)
    assert sampled("seed-b", 11) == first
    assert sampled("seed-c", 12) != first


def test_duplicate_running_request_id_is_rejected(model_dir):
    backend = HFBackend(model_dir)
    with backend._forward_lock:  # holds the first request before its first token
        backend.submit(GenerationRequest("dup", PROMPTS[0], GREEDY))
        with pytest.raises(ValueError, match="already running"):
            backend.submit(GenerationRequest("dup", PROMPTS[1], GREEDY))
    assert len([t for o in backend.stream("dup") for t in o.new_token_ids]) == GREEDY.max_tokens


def test_a_finished_request_nobody_streamed_can_be_dropped_and_its_id_reused(backend, reference):
    backend.submit(GenerationRequest("unread", PROMPTS[0], GREEDY))
    deadline = time.monotonic() + 60
    while backend.active_requests() and time.monotonic() < deadline:
        time.sleep(0.01)
    backend.cancel("unread")  # drops the unread outputs
    with pytest.raises(KeyError):
        next(backend.stream("unread"))
    tokens, last = run(backend, "unread", PROMPTS[0], GREEDY)
    assert tuple(tokens) == reference[PROMPTS[0]] and last.finish_reason is FinishReason.LENGTH


def test_concurrent_requests_all_finish_with_their_own_tokens(backend, reference):
    jobs = {f"concurrent-{i}": PROMPTS[i % len(PROMPTS)] for i in range(6)}
    results = contract.run_concurrently(backend, jobs, GREEDY)
    assert sorted(results) == sorted(jobs)
    for request_id, prompt in jobs.items():
        tokens, last = results[request_id]
        assert tuple(tokens) == reference[prompt]  # interleaving never mixes requests' caches
        assert last.finish_reason is FinishReason.LENGTH
    assert backend.active_requests() == 0
