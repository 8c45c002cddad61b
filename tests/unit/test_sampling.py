"""The batched sampler: greedy, temperature / top-k / top-p / min-p, penalties, logprobs, seeds;
SamplingParams validation; and agreement with transformers' own logits processors."""

from __future__ import annotations

import math

import pytest
import torch

from chatstack.backends.base import MAX_LOGPROBS, SamplingParams
from chatstack.backends.hf_logits import logits_processors
from chatstack.backends.sampling import make_generator
from chatstack.engine.penalties import apply_penalties
from chatstack.engine.sampler import filter_logits, sample
from chatstack.engine.sequence import Sequence

# distinct logits so no top-k / top-p boundary is a tie; argmax is index 3
LOGITS = torch.tensor([1.0, 0.5, 2.0, 3.0, -1.0, 0.0, 2.5, -2.0])  # (vocab,)
ARGMAX = 3


def seq(params: SamplingParams, prompt=(0,), output=(), seq_id: str = "s") -> Sequence:
    """A sequence whose prompt is `prompt` and which has already generated `output`."""
    s = Sequence(seq_id, list(prompt), params, generator=make_generator(params))
    s.token_ids.extend(output)
    return s


def draws(params: SamplingParams, n: int, logits: torch.Tensor = LOGITS) -> list[int]:
    """n successive draws of one sequence (its generator advances row by row)."""
    s = seq(params)
    return sample(logits.repeat(n, 1), [s] * n).tokens


def kept(params: SamplingParams, logits: torch.Tensor = LOGITS) -> list[int]:
    return sorted(torch.isfinite(filter_logits(logits[None], [params])[0]).nonzero().flatten().tolist())


# -- greedy and the filters -------------------------------------------------------------

def test_greedy_picks_the_argmax():
    greedy = SamplingParams(max_tokens=1, temperature=0.0)
    rows = torch.stack([LOGITS, torch.roll(LOGITS, 2)])
    assert sample(rows, [seq(greedy), seq(greedy)]).tokens == [ARGMAX, (ARGMAX + 2) % len(LOGITS)]


def test_greedy_ignores_seed_and_filters():
    params = SamplingParams(max_tokens=1, temperature=0.0, top_k=3, top_p=0.2, min_p=0.9, seed=5)
    assert set(draws(params, 20)) == {ARGMAX}


def test_top_k_1_equals_greedy():
    assert set(draws(SamplingParams(max_tokens=1, temperature=1.5, top_k=1, seed=0), 200)) == {ARGMAX}


def test_tiny_top_p_keeps_only_the_top_token():
    params = SamplingParams(max_tokens=1, temperature=1.0, top_p=1e-6, seed=0)
    assert kept(params) == [ARGMAX]
    assert set(draws(params, 200)) == {ARGMAX}


def test_top_k_keeps_exactly_the_k_largest():
    assert kept(SamplingParams(max_tokens=1, top_k=3)) == [2, 3, 6]


def test_top_p_keeps_the_smallest_set_covering_p():
    probs = torch.softmax(LOGITS, dim=-1)
    order = torch.argsort(LOGITS, descending=True).tolist()  # [3, 6, 2, 0, 1, 5, 4, 7]
    top2 = float(probs[order[0]] + probs[order[1]])
    assert kept(SamplingParams(max_tokens=1, top_p=top2 - 1e-3)) == sorted(order[:2])
    assert kept(SamplingParams(max_tokens=1, top_p=top2 + 1e-3)) == sorted(order[:3])


def test_min_p_keeps_tokens_at_least_min_p_times_the_top_probability():
    # p_i / p_max = exp(l_i - 3): token 6 -> e^-0.5 = 0.607, token 2 -> e^-1 = 0.368, token 0 -> e^-2 = 0.135
    assert kept(SamplingParams(max_tokens=1, min_p=0.5)) == [3, 6]
    assert kept(SamplingParams(max_tokens=1, min_p=0.3)) == [2, 3, 6]
    assert kept(SamplingParams(max_tokens=1, min_p=0.1)) == [0, 2, 3, 6]
    assert kept(SamplingParams(max_tokens=1, min_p=1.0)) == [ARGMAX]
    # with temperature 2 the ratios are exp((l_i - 3) / 2): token 0 -> e^-1 = 0.368 now survives 0.3
    assert kept(SamplingParams(max_tokens=1, temperature=2.0, min_p=0.3)) == [0, 2, 3, 6]


def test_temperature_scales_the_kept_logits():
    assert torch.allclose(filter_logits(LOGITS[None], [SamplingParams(max_tokens=1, temperature=0.5)])[0], LOGITS / 0.5)


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(max_tokens=1, temperature=2.0, top_k=3, seed=1),
        SamplingParams(max_tokens=1, temperature=2.0, top_p=0.6, seed=2),
        SamplingParams(max_tokens=1, temperature=2.0, top_k=4, top_p=0.7, seed=3),
        SamplingParams(max_tokens=1, temperature=1.0, min_p=0.2, seed=4),
    ],
)
def test_filtered_tokens_are_never_sampled(params):
    allowed = set(kept(params))
    assert 1 < len(allowed) < len(LOGITS)
    assert set(draws(params, 2000)) == allowed  # every allowed token shows up, nothing else does


def test_each_row_of_a_batch_uses_its_own_settings():
    params = [SamplingParams(max_tokens=1, top_k=3), SamplingParams(max_tokens=1, min_p=0.5),
              SamplingParams(max_tokens=1, top_p=1e-6), SamplingParams(max_tokens=1)]
    rows = filter_logits(LOGITS.repeat(4, 1), params)
    assert [sorted(torch.isfinite(r).nonzero().flatten().tolist()) for r in rows] == [
        [2, 3, 6], [3, 6], [ARGMAX], list(range(len(LOGITS)))]


# -- penalties, hand-computed -------------------------------------------------------------

SMALL = torch.tensor([2.0, -1.0, 0.5, 3.0, 1.0])


def penalised(params: SamplingParams, prompt, output) -> list[float]:
    return apply_penalties(SMALL[None].clone(), [seq(params, prompt, output)])[0].tolist()


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits_of_seen_tokens():
    params = SamplingParams(max_tokens=4, repetition_penalty=2.0)
    # prompt holds token 1 (negative logit), output holds token 0 twice (once is enough)
    assert penalised(params, prompt=[1], output=[0, 0]) == [1.0, -2.0, 0.5, 3.0, 1.0]


def test_presence_penalty_is_subtracted_once_per_distinct_output_token():
    params = SamplingParams(max_tokens=4, presence_penalty=0.5)
    # token 4 is only in the prompt: untouched; token 3 twice and token 2 once: 0.5 each
    assert penalised(params, prompt=[4], output=[3, 2, 3]) == [2.0, -1.0, 0.0, 2.5, 1.0]


def test_frequency_penalty_is_subtracted_per_occurrence_in_the_output():
    params = SamplingParams(max_tokens=4, frequency_penalty=0.25)
    assert penalised(params, prompt=[4], output=[3, 2, 3]) == [2.0, -1.0, 0.25, 2.5, 1.0]


def test_penalties_combine_and_negative_values_reward():
    params = SamplingParams(max_tokens=4, repetition_penalty=2.0, presence_penalty=-0.5, frequency_penalty=0.25)
    # token 3: 3 / 2 = 1.5, then - 2 x 0.25 + 0.5 = 1.5; token 1 (prompt): -1 x 2 = -2
    assert penalised(params, prompt=[1], output=[3, 3]) == [2.0, -2.0, 0.5, 1.5, 1.0]


def test_penalties_touch_only_their_own_row_and_can_change_the_greedy_choice():
    greedy, penalty = SamplingParams(max_tokens=4, temperature=0.0), SamplingParams(
        max_tokens=4, temperature=0.0, presence_penalty=1.5)
    rows = SMALL.repeat(2, 1)
    picked = sample(rows, [seq(greedy, output=[3]), seq(penalty, output=[3])]).tokens
    assert picked == [3, 0]  # 3 - 1.5 = 1.5 < 2.0


# -- logprobs -----------------------------------------------------------------------------

def test_logprobs_report_the_chosen_token_and_the_top_n_of_the_raw_distribution():
    params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=3, presence_penalty=2.0)
    report = sample(LOGITS[None], [seq(params, output=[ARGMAX])]).logprobs[0]
    expected = torch.log_softmax(LOGITS, dim=-1)
    assert report.token_id == 6  # the penalty moved the choice; logprobs still describe the model
    assert math.isclose(report.logprob, float(expected[6]), rel_tol=1e-6)
    assert [t for t, _ in report.top] == [3, 6, 2]
    assert all(math.isclose(lp, float(expected[t]), rel_tol=1e-6) for t, lp in report.top)


def test_logprobs_zero_gives_only_the_chosen_token_and_none_when_not_asked():
    rows = LOGITS.repeat(2, 1)
    out = sample(rows, [seq(SamplingParams(max_tokens=1, temperature=0.0, logprobs=0)),
                        seq(SamplingParams(max_tokens=1, temperature=0.0))])
    assert out.logprobs[0].top == () and out.logprobs[0].token_id == ARGMAX and out.logprobs[1] is None


# -- seeds ----------------------------------------------------------------------------------

def test_same_seed_gives_the_same_sequence():
    params = SamplingParams(max_tokens=1, temperature=1.0, seed=1234)
    flat = torch.zeros(64)  # uniform over 64 tokens
    assert draws(params, 50, flat) == draws(params, 50, flat)


def test_different_seeds_give_different_sequences():
    # 50 uniform draws over 64 tokens: two seeds agree everywhere with probability 64**-50
    flat = torch.zeros(64)
    assert len({tuple(draws(SamplingParams(max_tokens=1, seed=s), 50, flat)) for s in range(5)}) == 5


def test_no_seed_means_no_generator():
    assert make_generator(SamplingParams(max_tokens=1)) is None


def test_seeds_that_differ_by_2_pow_63_give_different_sequences():
    flat = torch.zeros(64)
    assert draws(SamplingParams(max_tokens=1, seed=7), 50, flat) != draws(SamplingParams(max_tokens=1, seed=7 + 2**63), 50, flat)


# -- agreement with transformers' processors ---------------------------------------------------

@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(max_tokens=8, temperature=0.0, repetition_penalty=1.3),
        SamplingParams(max_tokens=8, temperature=0.0, repetition_penalty=0.8, frequency_penalty=0.4),
        SamplingParams(max_tokens=8, temperature=0.7, top_k=20, top_p=0.9, min_p=0.05, presence_penalty=0.6),
        SamplingParams(max_tokens=8, temperature=1.3, min_p=0.1, repetition_penalty=1.2, frequency_penalty=-0.3),
    ],
)
def test_native_processing_equals_transformers_logits_processors(params):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 100, generator=generator) * 3
    prompts = [[1, 5, 5, 9], [7], [2, 3, 4, 5, 6]]
    outputs = [[9, 9, 40], [7, 7, 7, 8], []]
    seqs = [seq(params, p, o, seq_id=str(i)) for i, (p, o) in enumerate(zip(prompts, outputs))]
    ours = apply_penalties(logits.clone(), seqs)
    if not params.greedy:
        ours = filter_logits(ours, [params] * 3)
    for row, s in enumerate(seqs):
        theirs = logits_processors(params, s.num_prompt_tokens)(torch.tensor([s.token_ids]), logits[row:row + 1].clone())[0]
        assert torch.equal(torch.isinf(ours[row]), torch.isinf(theirs)), row
        finite = torch.isfinite(theirs)
        assert torch.allclose(ours[row][finite], theirs[finite], atol=1e-5), row


# -- validation -------------------------------------------------------------------------------

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
        (dict(min_p=-0.1), "min_p"),
        (dict(min_p=1.5), "min_p"),
        (dict(min_p=float("nan")), "min_p"),
        (dict(repetition_penalty=0.0), "repetition_penalty"),
        (dict(repetition_penalty=-1.0), "repetition_penalty"),
        (dict(repetition_penalty=float("inf")), "repetition_penalty"),
        (dict(repetition_penalty=float("nan")), "repetition_penalty"),
        (dict(presence_penalty=2.5), "presence_penalty"),
        (dict(presence_penalty=float("nan")), "presence_penalty"),
        (dict(frequency_penalty=-3.0), "frequency_penalty"),
        (dict(frequency_penalty=float("inf")), "frequency_penalty"),
        (dict(logprobs=-1), "logprobs"),
        (dict(logprobs=MAX_LOGPROBS + 1), "logprobs"),
    ],
)
def test_sampling_params_reject_invalid_values(overrides, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        SamplingParams(**({"max_tokens": 1} | overrides))


def test_sampling_params_accept_the_edges():
    params = SamplingParams(max_tokens=1, temperature=0.0, top_p=1.0, top_k=0, seed=2**64 - 1, min_p=1.0,
                            repetition_penalty=1e-3, presence_penalty=-2.0, frequency_penalty=2.0, logprobs=MAX_LOGPROBS)
    assert params.greedy and params.penalised
    assert not SamplingParams(max_tokens=1, temperature=1e-6).greedy
    assert not SamplingParams(max_tokens=1).penalised
