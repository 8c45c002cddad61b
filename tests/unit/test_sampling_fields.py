"""Parsing the serving sampling fields (min-p, penalties, logprobs) and the logprobs JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from chatstack.backends.base import TokenLogprob
from chatstack.config import DeploymentConfig
from chatstack.serving.sampling_fields import logprobs_json, merge_logprobs, parse_sampling
from chatstack.text.tokenizer import load_tokenizer

CFG = DeploymentConfig()


def parse(**values):
    return parse_sampling({k: np.array([[v]]) for k, v in values.items()}, CFG)


def test_new_fields_reach_sampling_params_and_default_to_off():
    params = parse(min_p=0.1, repetition_penalty=1.2, presence_penalty=-0.5, frequency_penalty=0.3,
                   return_log_probs=True, top_log_probs=4)
    assert (params.min_p, params.repetition_penalty, params.presence_penalty, params.frequency_penalty,
            params.logprobs) == pytest.approx((0.1, 1.2, -0.5, 0.3, 4))
    defaults = parse()
    assert (defaults.min_p, defaults.repetition_penalty, defaults.logprobs, defaults.penalised) == (0.0, 1.0, None, False)
    assert parse(return_log_probs=True).logprobs == 0
    assert parse(return_log_probs=False).logprobs is None


def test_the_deployments_frequency_penalty_applies_unless_the_request_sets_one():
    from chatstack.config import config_from_dict

    cfg = config_from_dict({"generation": {"default_frequency_penalty": 0.5}})
    assert parse_sampling({}, cfg).frequency_penalty == 0.5
    assert parse_sampling({"frequency_penalty": np.array([[0.0]])}, cfg).frequency_penalty == 0.0
    with pytest.raises(ValueError, match="generation.default_frequency_penalty"):
        config_from_dict({"generation": {"default_frequency_penalty": 3.0}})


@pytest.mark.parametrize(("values", "field"), [
    (dict(min_p=-0.5), "min_p"),
    (dict(repetition_penalty=0.0), "repetition_penalty"),
    (dict(presence_penalty=2.5), "presence_penalty"),
    (dict(frequency_penalty=float("inf")), "frequency_penalty"),
    (dict(return_log_probs=True, top_log_probs=21), "top_log_probs"),
    (dict(return_log_probs=True, top_log_probs=-1), "top_log_probs"),
    (dict(top_log_probs=3), "top_log_probs"),
])
def test_bad_values_raise_naming_the_field(values, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        parse(**values)


DEMO_MODEL = Path(__file__).resolve().parents[2] / "artifacts" / "demo-model"


@pytest.mark.skipif(not (DEMO_MODEL / "tokenizer.json").exists(), reason="needs the demo model's tokenizer")
def test_logprobs_json_has_one_entry_per_token_and_merges_in_order():
    tokenizer = load_tokenizer(DEMO_MODEL)
    ids = tokenizer.encode("def main", add_special_tokens=False)[:2]
    first = logprobs_json([TokenLogprob(ids[0], -0.5, ((ids[0], -0.5), (ids[1], -1.25)))], tokenizer)
    second = logprobs_json([TokenLogprob(ids[1], -2.0)], tokenizer)
    word = tokenizer.decode(ids[:1])
    assert json.loads(first) == [{"token_id": ids[0], "token": word, "logprob": -0.5, "top_logprobs": [
        {"token_id": ids[0], "token": word, "logprob": -0.5},
        {"token_id": ids[1], "token": tokenizer.decode(ids[1:2]), "logprob": -1.25}]}]
    merged = json.loads(merge_logprobs([first, second]))
    assert [e["token_id"] for e in merged] == ids and merged[1]["top_logprobs"] == []
