"""Feedback through the real server: answer → response_id → feedback model → preference pairs."""

from __future__ import annotations

import pytest

from chatstack.client import ChatClient, ChatError, ChatOptions
from chatstack.feedback.pairs import preference_pairs
from chatstack.feedback.store import FeedbackStore

pytestmark = pytest.mark.integration


def test_a_corrected_answer_becomes_a_preference_pair(stack):
    client = ChatClient(stack.grpc_url, timeout_s=120)
    reply = client.complete("What is a frozenset?", ChatOptions(max_tokens=8, temperature=0.0))
    assert len(reply.response_id) == 32
    client.feedback(reply.response_id, -1, "An immutable set.")
    pairs = [p for p in preference_pairs(FeedbackStore(stack.sessions_db).rated_answers())
             if p.prompt[-1].content == "What is a frozenset?"]
    assert pairs and pairs[-1].chosen == "An immutable set." and pairs[-1].rejected == reply.text


@pytest.mark.parametrize(
    ("response_id", "rating", "field"),
    [("0" * 32, 1, "response_id"), (None, 0, "rating"), (None, 5, "rating")],
)
def test_bad_feedback_is_rejected_naming_the_field(stack, response_id, rating, field):
    client = ChatClient(stack.grpc_url, timeout_s=120)
    if response_id is None:
        response_id = client.complete("hi", ChatOptions(max_tokens=2)).response_id
    with pytest.raises(ChatError, match=field):
        client.feedback(response_id, rating)
