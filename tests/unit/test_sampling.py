"""Next-token selection: greedy, top-k, top-p, seeded sampling; SamplingParams validation."""

from __future__ import annotations

import pytest
import torch

from chatstack.backends.base import SamplingParams
from chatstack.backends.sampling import filter_logits, make_generator, sample_next

# distinct logits so no top-k / top-p boundary is a tie; argmax is index 3
LOGITS = torch.tensor([1.0, 0.5, 2.0, 3.0, -1.0, 0.0, 2.5, -2.0])  # (vocab,)
ARGMAX = 3


def draws(params: SamplingParams, n: int, logits: torch.Tensor = LOGITS) -> list[int]:
    generator = make_generator(params)
    return [sample_next(logits, params, generator) for _ in range(n)]


def test_greedy_picks_the_argmax():
    assert sample_next(LOGITS, SamplingParams(max_tokens=1, temperature=0.0), None) == ARGMAX
    shifted = torch.roll(LOGITS, 2)
    assert sample_next(shifted, SamplingParams(max_tokens=1, temperature=0.0), None) == (ARGMAX + 2) % len(LOGITS)


def test_greedy_ignores_seed_and_filters():
    params = SamplingParams(max_tokens=1, temperature=0.0, top_k=3, top_p=0.2, seed=5)
    assert set(draws(params, 20)) == {ARGMAX}


def test_top_k_1_equals_greedy():
    params = SamplingParams(max_tokens=1, temperature=1.5, top_k=1, seed=0)
    assert set(draws(params, 200)) == {ARGMAX}


def test_tiny_top_p_keeps_only_the_top_token():
    params = SamplingParams(max_tokens=1, temperature=1.0, top_p=1e-6, seed=0)
    filtered = filter_logits(LOGITS, params)
    assert torch.isfinite(filtered).nonzero().flatten().tolist() == [ARGMAX]
    assert set(draws(params, 200)) == {ARGMAX}


def test_top_k_keeps_exactly_the_k_largest():
    filtered = filter_logits(LOGITS, SamplingParams(max_tokens=1, top_k=3))
    assert sorted(torch.isfinite(filtered).nonzero().flatten().tolist()) == [2, 3, 6]


def test_top_p_keeps_the_smallest_set_covering_p():
    probs = torch.softmax(LOGITS, dim=-1)
    order = torch.argsort(LOGITS, descending=True).tolist()  # [3, 6, 2, 0, 1, 5, 4, 7]
    top2 = float(probs[order[0]] + probs[order[1]])
    params = SamplingParams(max_tokens=1, top_p=top2 - 1e-3)  # just short of two tokens' mass
    kept = torch.isfinite(filter_logits(LOGITS, params)).nonzero().flatten().tolist()
    assert sorted(kept) == sorted(order[:2])
    params = SamplingParams(max_tokens=1, top_p=top2 + 1e-3)
    kept = torch.isfinite(filter_logits(LOGITS, params)).nonzero().flatten().tolist()
    assert sorted(kept) == sorted(order[:3])


def test_temperature_scales_the_kept_logits():
    filtered = filter_logits(LOGITS, SamplingParams(max_tokens=1, temperature=0.5))
    assert torch.allclose(filtered, LOGITS / 0.5)


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(max_tokens=1, temperature=2.0, top_k=3, seed=1),
        SamplingParams(max_tokens=1, temperature=2.0, top_p=0.6, seed=2),
        SamplingParams(max_tokens=1, temperature=2.0, top_k=4, top_p=0.7, seed=3),
    ],
)
def test_filtered_tokens_are_never_sampled(params):
    allowed = set(torch.isfinite(filter_logits(LOGITS, params)).nonzero().flatten().tolist())
    assert 1 < len(allowed) < len(LOGITS)
    samples = draws(params, 2000)
    assert set(samples) == allowed  # every allowed token shows up, nothing else does


def test_same_seed_gives_the_same_sequence():
    params = SamplingParams(max_tokens=1, temperature=1.0, seed=1234)
    flat = torch.zeros(64)  # uniform over 64 tokens
    assert draws(params, 50, flat) == draws(params, 50, flat)


def test_different_seeds_give_different_sequences():
    # 50 uniform draws over 64 tokens: two seeds agree everywhere with probability 64**-50
    flat = torch.zeros(64)
    sequences = {tuple(draws(SamplingParams(max_tokens=1, seed=seed), 50, flat)) for seed in range(5)}
    assert len(sequences) == 5


def test_no_seed_means_no_generator():
    assert make_generator(SamplingParams(max_tokens=1)) is None


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (dict(max_tokens=0), "max_tokens"),
        (dict(temperature=-0.5), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(temperature=float("inf")), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.01), "top_p"),
        (dict(top_p=float("nan")), "top_p"),
        (dict(top_k=-1), "top_k"),
        (dict(seed=-1), "seed"),
        (dict(seed=2**64), "seed"),
    ],
)
def test_sampling_params_reject_invalid_values(overrides, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        SamplingParams(**({"max_tokens": 1} | overrides))


def test_sampling_params_accept_the_edges():
    params = SamplingParams(max_tokens=1, temperature=0.0, top_p=1.0, top_k=0, seed=2**64 - 1)
    assert params.greedy
    assert not SamplingParams(max_tokens=1, temperature=1e-6).greedy


def test_seeds_that_differ_by_2_pow_63_give_different_sequences():
    flat = torch.zeros(64)
    assert draws(SamplingParams(max_tokens=1, seed=7), 50, flat) != draws(SamplingParams(max_tokens=1, seed=7 + 2**63), 50, flat)
