"""The HF baseline backend beyond the shared contract (tests/unit/engine/test_backend_contract.py):
a failing forward, its settings, and its presence / frequency processor (transformers has none)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from chatstack.backends.base import FinishReason, SamplingParams
from chatstack.backends.hf import HFBackend
from chatstack.backends.hf_logits import PresenceFrequencyPenalty, logits_processors
from tests.unit import backend_contract as contract

VOCAB = 128
GREEDY = SamplingParams(max_tokens=8, temperature=0.0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny-llama-hf")
    model.save_pretrained(path)
    return path


def test_a_failing_forward_ends_the_stream_with_an_error(model_dir):
    backend = HFBackend(model_dir)
    tokens, last = contract.run(backend, "bad-id", (1, VOCAB + 50), GREEDY)  # id outside the embedding table
    assert tokens == []
    assert last.finish_reason is FinishReason.ERROR and last.error
    assert backend.active_requests() == 0
    tokens, last = contract.run(backend, "after", (1, 2, 3), GREEDY)  # the backend keeps serving
    assert len(tokens) == GREEDY.max_tokens and last.finish_reason is FinishReason.LENGTH


@pytest.mark.parametrize("value", [-1, 21])
def test_max_logprobs_outside_its_range_is_rejected(model_dir, value):
    with pytest.raises(ValueError, match="^max_logprobs"):
        HFBackend(model_dir, max_logprobs=value)


def test_presence_frequency_processor_counts_output_tokens_only():
    processor = PresenceFrequencyPenalty(presence=0.5, frequency=0.25, num_prompt_tokens=2)
    input_ids = torch.tensor([[4, 3, 3, 2, 3]])  # prompt (4, 3); output 3, 2, 3
    scores = processor(input_ids, torch.zeros(1, 5))
    assert scores[0].tolist() == [0.0, 0.0, -0.75, -1.0, 0.0]


def test_only_the_asked_for_processors_are_built_and_greedy_skips_the_warpers():
    assert len(logits_processors(SamplingParams(max_tokens=1), 3)) == 0
    greedy = SamplingParams(max_tokens=1, temperature=0.0, top_k=5, min_p=0.1, repetition_penalty=1.1)
    assert [type(p).__name__ for p in logits_processors(greedy, 3)] == ["RepetitionPenaltyLogitsProcessor"]
    sampled = SamplingParams(max_tokens=1, temperature=0.5, top_k=5, top_p=0.9, min_p=0.1, presence_penalty=0.2)
    assert [type(p).__name__ for p in logits_processors(sampled, 3)] == [
        "PresenceFrequencyPenalty", "TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper",
        "MinPLogitsWarper"]
