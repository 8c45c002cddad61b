"""Held-out perplexity and DPO preference metrics on tiny real models."""

from __future__ import annotations

import math

import pytest
import torch

from chatstack.evaluation.models import load_model, parent_model
from chatstack.evaluation.perplexity import perplexity, read_texts, windows
from chatstack.evaluation.preference import PreferenceSet, preference_score

TEXTS = {"a": "The with statement wraps a block in a context manager. " * 20, "b": "Tuples are immutable sequences."}


def test_windows_cover_every_id_once():
    ids = list(range(10))
    assert windows(ids, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert windows(list(range(9)), 4) == [[0, 1, 2, 3], [4, 5, 6, 7]]  # a 1-id tail predicts nothing


def test_a_model_with_uniform_predictions_has_perplexity_equal_to_the_vocabulary(tiny_pair):
    loaded = load_model(tiny_pair[0])
    with torch.no_grad():
        loaded.model.get_output_embeddings().weight.zero_()  # all logits 0: every token has probability 1/V
    result = perplexity(loaded, TEXTS, window=32, batch_size=3)
    vocabulary = loaded.model.config.vocab_size
    assert result.perplexity == pytest.approx(vocabulary, rel=1e-4)
    per_text = [len(loaded.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in TEXTS.values()]
    assert result.tokens == sum(sum(len(w) - 1 for w in windows(list(range(n)), 32)) for n in per_text)


def test_perplexity_does_not_depend_on_batching(tiny_pair):
    loaded = load_model(tiny_pair[1])
    one, many = perplexity(loaded, TEXTS, window=48, batch_size=1), perplexity(loaded, TEXTS, window=48, batch_size=5)
    assert math.isfinite(one.perplexity) and one.perplexity == pytest.approx(many.perplexity, rel=1e-5)
    assert one.text_sha256 == many.text_sha256


def test_bad_perplexity_inputs_are_rejected(tiny_pair, tmp_path):
    loaded = load_model(tiny_pair[0])
    with pytest.raises(ValueError, match="window"):
        perplexity(loaded, TEXTS, window=5000)
    with pytest.raises(ValueError, match="held_out"):
        read_texts([tmp_path / "missing.md"])


def test_preference_metrics_flip_sign_when_policy_and_reference_swap(tiny_pair):
    base, other = (load_model(p) for p in tiny_pair)
    pairs = PreferenceSet(pairs=3)
    forward, backward = preference_score(other, base, pairs), preference_score(base, other, pairs)
    assert forward.pairs == 3 and forward.reference == str(tiny_pair[0])
    assert forward.mean_margin == pytest.approx(-backward.mean_margin, abs=1e-4)
    assert forward.accuracy + backward.accuracy <= 1  # a pair is right one way or the other, or a tie
    same = preference_score(base, base, pairs)
    assert same.mean_margin == 0 and same.accuracy == 0  # no preference at all: no pair ranked right


def test_parent_model_is_read_from_the_training_summary(tiny_pair):
    assert parent_model(tiny_pair[1]) == tiny_pair[0]
    assert parent_model(tiny_pair[0]) is None


@pytest.mark.parametrize("raw, field", [({"pairs": 0}, "pairs"), ({"beta": 0.0}, "beta")])
def test_bad_preference_settings_are_rejected(raw, field):
    with pytest.raises(ValueError, match=field):
        PreferenceSet(**raw)
