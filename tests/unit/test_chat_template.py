"""The pure-Python chat renderer and the JSON form of a conversation.

Equivalence with the HF tokenizer's Jinja template lives in test_tokenizer.py.
"""

from __future__ import annotations

import json

import pytest

from chatstack.text.chat_template import (
    Message,
    messages_from_json,
    messages_to_json,
    render_chat,
    render_message,
)

CONVERSATION = [
    Message("system", "Be brief."),
    Message("user", "What is a tuple?"),
    Message("assistant", "An immutable sequence."),
    Message("user", "And a list?"),
]


def test_render_chat_format():
    assert render_chat(CONVERSATION) == (
        "<|system|>\nBe brief.<|end|>\n"
        "<|user|>\nWhat is a tuple?<|end|>\n"
        "<|assistant|>\nAn immutable sequence.<|end|>\n"
        "<|user|>\nAnd a list?<|end|>\n"
        "<|assistant|>\n"
    )


def test_without_generation_prompt_ends_after_the_last_turn():
    rendered = render_chat(CONVERSATION, add_generation_prompt=False)
    assert rendered.endswith("<|user|>\nAnd a list?<|end|>\n")
    assert render_chat(CONVERSATION, add_generation_prompt=True) == rendered + "<|assistant|>\n"


def test_render_chat_is_the_concatenation_of_its_messages():
    assert render_chat(CONVERSATION, add_generation_prompt=False) == "".join(map(render_message, CONVERSATION))


def test_content_is_kept_verbatim():
    content = "  two leading spaces\n\nblank line, tab\t, 中文 😀 e\u0301  "
    assert render_message(Message("user", content)) == f"<|user|>\n{content}<|end|>\n"


def test_empty_conversation_is_just_the_generation_prompt():
    assert render_chat([]) == "<|assistant|>\n"
    assert render_chat([], add_generation_prompt=False) == ""


@pytest.mark.parametrize("role", ["tool", "User", "", "bot"])
def test_unknown_role_is_rejected(role):
    with pytest.raises(ValueError, match="role"):
        Message(role, "hi")


def test_json_round_trip_with_unicode():
    messages = [
        Message("system", "Antworte auf Deutsch: äöüß"),
        Message("user", "中文 日本語 한국어 😀👨‍👩‍👧 e\u0301 \"quotes\" \\ back\nslash"),
        Message("assistant", ""),
    ]
    text = messages_to_json(messages)
    assert "中文" in text and "😀" in text  # kept as characters, not \u escapes
    assert messages_from_json(text) == messages


def test_json_form_is_a_list_of_role_content_objects():
    assert json.loads(messages_to_json(CONVERSATION[:2])) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is a tuple?"},
    ]


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '[{"role": "user"}]',
        '[{"content": "hi"}]',
        '{"role": "user", "content": "hi"}',
        '"a string"',
        "42",
        "null",
        '[{"role": "wizard", "content": "hi"}]',
        '[["user", "hi"]]',
    ],
)
def test_malformed_json_raises_naming_messages(text):
    with pytest.raises(ValueError, match="^messages"):
        messages_from_json(text)
