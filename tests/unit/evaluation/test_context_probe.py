"""Probes of whether a model reads its context: held-out pair token shares and the repeat probe."""

from __future__ import annotations

import math

from transformers import AutoModelForCausalLM, AutoTokenizer

from chatstack.alignment.context_probe import held_out_helpfulness_pairs, probe, repeat_probe


def test_held_out_pairs_are_separable_by_copying_and_an_untrained_model_does_not_copy(tiny_pair):
    tokenizer = AutoTokenizer.from_pretrained(tiny_pair[0])
    model = AutoModelForCausalLM.from_pretrained(tiny_pair[0]).eval()
    records = held_out_helpfulness_pairs()[:4]
    result = probe(tokenizer, records)  # (the tiny tokenizer makes these prompts too long for a copy gain)
    assert result.pairs == 4 and result.chosen_token_share > result.rejected_token_share
    first, second = repeat_probe(model, tokenizer, spans=3, length=20)
    vocab = math.log(len(tokenizer))
    assert abs(first - second) < 0.5 and abs(first - vocab) < 1.5  # both copies cost what chance does
