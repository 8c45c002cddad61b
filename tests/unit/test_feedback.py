"""Feedback store and preference-pair export, on a real SQLite file."""

from __future__ import annotations

import json

import pytest

from chatstack.feedback.pairs import preference_pairs
from chatstack.feedback.store import FeedbackStore, dump_jsonl
from chatstack.text.chat_template import Message

PROMPT = [Message("system", "Be brief."), Message("user", "What is a tuple?")]


@pytest.fixture
def store(tmp_path) -> FeedbackStore:
    return FeedbackStore(tmp_path / "db.sqlite")


def test_correction_becomes_a_pair_with_the_correction_chosen(store):
    store.record_response("a" * 32, "s1", PROMPT, "A tuple is a fish.")
    store.record_feedback("a" * 32, -1, "A tuple is an immutable sequence.")
    (pair,) = preference_pairs(store.rated_answers())
    assert pair.chosen == "A tuple is an immutable sequence." and pair.rejected == "A tuple is a fish."
    assert pair.prompt == PROMPT and pair.source == "correction"


def test_thumbs_down_pairs_with_a_liked_answer_to_the_same_prompt(store):
    store.record_response("a" * 32, None, PROMPT, "bad")
    store.record_response("b" * 32, None, PROMPT, "good")
    store.record_response("c" * 32, None, [Message("user", "other")], "unrelated")
    store.record_feedback("a" * 32, -1)
    store.record_feedback("b" * 32, 1)
    store.record_feedback("c" * 32, 1)
    (pair,) = preference_pairs(store.rated_answers())
    assert (pair.chosen, pair.rejected, pair.source) == ("good", "bad", "rating")


def test_latest_feedback_wins_and_unpaired_answers_give_nothing(store):
    store.record_response("a" * 32, None, PROMPT, "fine")
    store.record_feedback("a" * 32, -1)
    store.record_feedback("a" * 32, 1)
    assert [r.rating for r in store.rated_answers()] == [1]
    assert preference_pairs(store.rated_answers()) == []


@pytest.mark.parametrize(("rating", "message"), [(0, "rating"), (2, "rating")])
def test_bad_rating_is_rejected(store, rating, message):
    store.record_response("a" * 32, None, PROMPT, "x")
    with pytest.raises(ValueError, match=message):
        store.record_feedback("a" * 32, rating)


def test_feedback_on_an_unknown_answer_is_rejected(store):
    with pytest.raises(ValueError, match="response_id"):
        store.record_feedback("f" * 32, 1)


def test_export_writes_trl_conversational_records(store, tmp_path):
    store.record_response("a" * 32, None, PROMPT, "wrong")
    store.record_feedback("a" * 32, -1, "right")
    out = tmp_path / "pairs.jsonl"
    assert dump_jsonl([p.to_record() for p in preference_pairs(store.rated_answers())], out) == 1
    record = json.loads(out.read_text())
    assert record["prompt"][1] == {"role": "user", "content": "What is a tuple?"}
    assert record["chosen"] == [{"role": "assistant", "content": "right"}]
    assert record["rejected"] == [{"role": "assistant", "content": "wrong"}]


def test_answers_survive_reopening_the_store(tmp_path):
    FeedbackStore(tmp_path / "db.sqlite").record_response("a" * 32, None, PROMPT, "kept")
    reopened = FeedbackStore(tmp_path / "db.sqlite")
    reopened.record_feedback("a" * 32, 1)
    assert reopened.rated_answers()[0].answer == "kept"
