"""Request tensors (numpy arrays shaped as Triton delivers them) to validated values.

Covers `serving.fields`, `serving.sampling_fields` and `serving.chat_request`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from chatstack.backends.base import SamplingParams
from chatstack.config import DeploymentConfig, GenerationSection
from chatstack.rag.retriever import Passage
from chatstack.serving import fields
from chatstack.serving.chat_request import parse_chat_request
from chatstack.serving.sampling_fields import MAX_STOP_WORDS, parse_sampling
from chatstack.text.chat_template import Message

CFG = DeploymentConfig()
LIMIT = CFG.generation.max_tokens_limit


def text(value: str | bytes) -> np.ndarray:
    """A TYPE_STRING input of one request: shape [1, 1], object dtype holding bytes."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return np.array([[raw]], dtype=object)


def texts(*values: str) -> np.ndarray:
    return np.array([[v.encode("utf-8") for v in values]], dtype=object)  # (1, N)


def int32(value: int) -> np.ndarray:
    return np.array([[value]], dtype=np.int32)


def fp32(value: float) -> np.ndarray:
    return np.array([[value]], dtype=np.float32)


def boolean(value: bool) -> np.ndarray:
    return np.array([[value]], dtype=bool)


MESSAGES = [Message("system", "Be brief."), Message("user", "What is a set? 😀")]


def generate_inputs(**overrides: np.ndarray | None) -> dict[str, np.ndarray | None]:
    """What the ensemble hands the `generate` step, plus per-test overrides."""
    tensors = {
        "messages": text(json.dumps([{"role": m.role, "content": m.content} for m in MESSAGES])),
        "input_blocked": boolean(False),
        "input_reason": text(""),
        "passages": text("[]"),
    }
    return {k: v for k, v in (tensors | overrides).items() if v is not None}


# --- fields -------------------------------------------------------------------------------


def test_required_text_decodes_utf8():
    assert fields.required_text({"text_input": text("héllo 中文 😀")}, "text_input") == "héllo 中文 😀"


def test_required_text_accepts_a_flat_shape_too():
    assert fields.required_text({"text_input": np.array([b"hi"], dtype=object)}, "text_input") == "hi"


@pytest.mark.parametrize(
    ("tensors", "problem"),
    [
        ({}, "is required"),
        ({"text_input": None}, "is required"),
        ({"text_input": text("")}, "must not be empty"),
        ({"text_input": text("  \n\t ")}, "must not be empty"),
        ({"text_input": text(b"caf\xe9")}, "not valid UTF-8"),
        ({"text_input": text(b"\xff\xfe")}, "not valid UTF-8"),
        ({"text_input": texts("one", "two")}, "exactly one value"),
        ({"text_input": np.array([[b"a"], [b"b"]], dtype=object)}, "exactly one value"),
        ({"text_input": np.zeros((1, 0), dtype=object)}, "exactly one value"),
        ({"text_input": int32(5)}, "UTF-8 string"),
    ],
)
def test_required_text_errors_start_with_the_field(tensors, problem):
    with pytest.raises(ValueError, match="^text_input") as info:
        fields.required_text(tensors, "text_input")
    assert problem in str(info.value)


def test_non_utf8_error_points_at_the_bad_byte():
    with pytest.raises(ValueError, match=r"byte 3: b'\\xe9'"):
        fields.required_text({"text_input": text(b"caf\xe9")}, "text_input")


def test_optional_values_absent_are_none():
    assert fields.optional_text({}, "session_id") is None
    assert fields.optional_int({}, "top_k", 0) is None
    assert fields.optional_float({}, "temperature") is None
    assert fields.optional_bool({}, "stream") is None
    assert fields.text_list({}, "stop_words") == ()


def test_optional_values_present():
    assert fields.optional_text({"s": text("")}, "s") == ""
    assert fields.optional_int({"n": int32(7)}, "n", 1, 7) == 7
    assert fields.optional_float({"t": fp32(0.5)}, "t") == 0.5
    assert fields.optional_bool({"b": boolean(True)}, "b") is True
    assert fields.text_list({"w": texts("a", "中")}, "w") == ("a", "中")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_float_is_rejected(value):
    with pytest.raises(ValueError, match="^temperature must be a finite number"):
        fields.optional_float({"temperature": fp32(value)}, "temperature")


def test_text_list_rejects_empty_and_invalid_entries():
    with pytest.raises(ValueError, match="^stop_words must not contain empty"):
        fields.text_list({"stop_words": texts("ok", "")}, "stop_words")
    with pytest.raises(ValueError, match="^stop_words is not valid UTF-8"):
        fields.text_list({"stop_words": np.array([[b"ok", b"\xc3"]], dtype=object)}, "stop_words")


# --- parse_sampling -----------------------------------------------------------------------


def test_sampling_defaults_come_from_the_deployment_config():
    cfg = DeploymentConfig(generation=GenerationSection(
        default_max_tokens=7, max_tokens_limit=9, default_temperature=0.3, default_top_p=0.5, default_top_k=11,
    ))
    assert parse_sampling({}, cfg) == SamplingParams(max_tokens=7, temperature=0.3, top_p=0.5, top_k=11)


def test_sampling_values_from_the_request():
    tensors = {
        "max_tokens": int32(LIMIT), "temperature": fp32(0.0), "top_p": fp32(1.0), "top_k": int32(3),
        "seed": np.array([[2**64 - 1]], dtype=np.uint64), "ignore_eos": boolean(True),
    }
    assert parse_sampling(tensors, CFG) == SamplingParams(
        max_tokens=LIMIT, temperature=0.0, top_p=1.0, top_k=3, seed=2**64 - 1, ignore_eos=True,
    )


@pytest.mark.parametrize(
    ("name", "tensor"),
    [
        ("max_tokens", int32(0)),
        ("max_tokens", int32(-5)),
        ("max_tokens", int32(LIMIT + 1)),
        ("temperature", fp32(-0.1)),
        ("temperature", fp32(float("nan"))),
        ("top_p", fp32(0.0)),
        ("top_p", fp32(1.5)),
        ("top_p", fp32(-0.2)),
        ("top_k", int32(-1)),
        ("max_tokens", np.array([[1, 2]], dtype=np.int32)),
        ("temperature", np.array([[0.5], [0.5]], dtype=np.float32)),
    ],
)
def test_invalid_sampling_value_error_starts_with_the_field(name, tensor):
    with pytest.raises(ValueError, match=f"^{name}"):
        parse_sampling({name: tensor}, CFG)


def test_max_tokens_error_states_the_limit():
    with pytest.raises(ValueError, match=rf"max_tokens must be in \[1, {LIMIT}\], got {LIMIT + 1}"):
        parse_sampling({"max_tokens": int32(LIMIT + 1)}, CFG)


# --- parse_chat_request -------------------------------------------------------------------


def test_parses_a_full_generate_request():
    passages = [Passage("Sets hold unique items.", "docs/set.md", 0.9)]
    request = parse_chat_request(generate_inputs(
        passages=text(json.dumps([{"text": p.text, "source": p.source, "score": p.score} for p in passages])),
        session_id=text("s-1"), stop_words=texts("</s>", "User:"), stream=boolean(True),
        max_tokens=int32(5), temperature=fp32(0.0),
    ), CFG)
    assert request.messages == MESSAGES and request.user_text == "What is a set? 😀"
    assert request.passages == passages
    assert request.session_id == "s-1" and request.stream is True
    assert request.stop_words == ("</s>", "User:")
    assert request.sampling.max_tokens == 5 and request.sampling.greedy
    assert (request.input_blocked, request.input_reason) == (False, "")


def test_optional_inputs_absent_take_defaults():
    request = parse_chat_request(generate_inputs(input_blocked=None, input_reason=None, passages=None), CFG)
    assert request.passages == [] and request.stop_words == () and request.session_id is None
    assert request.stream is False and request.input_blocked is False
    assert request.sampling == parse_sampling({}, CFG)


def test_blocked_input_is_carried_through():
    request = parse_chat_request(generate_inputs(input_blocked=boolean(True), input_reason=text("jailbreak")), CFG)
    assert request.input_blocked and request.input_reason == "jailbreak"


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"messages": None}, "messages"),
        ({"messages": text("   ")}, "messages"),
        ({"messages": text(b"\xff")}, "messages"),
        ({"messages": text("{not json")}, "messages"),
        ({"messages": text("[]")}, "messages"),
        ({"messages": text('[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]')}, "messages"),
        ({"passages": text('[{"text": "x"}]')}, "passages"),
        ({"session_id": text("")}, "session_id"),
        ({"session_id": text("bad\nid")}, "session_id"),
        ({"stop_words": texts(*[f"w{i}" for i in range(MAX_STOP_WORDS + 1)])}, "stop_words"),
        ({"stop_words": texts("ok", "")}, "stop_words"),
        ({"max_tokens": int32(0)}, "max_tokens"),
        ({"top_p": fp32(1.5)}, "top_p"),
    ],
)
def test_invalid_request_error_starts_with_the_field(overrides, name):
    with pytest.raises(ValueError, match=f"^{name}"):
        parse_chat_request(generate_inputs(**overrides), CFG)


def test_stop_words_at_the_limit_are_accepted():
    words = [f"w{i}" for i in range(MAX_STOP_WORDS)]
    assert parse_chat_request(generate_inputs(stop_words=texts(*words)), CFG).stop_words == tuple(words)
