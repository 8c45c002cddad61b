"""Fitting a conversation into the prompt budget by dropping the oldest whole turns."""

from __future__ import annotations

import pytest

from chatstack.sessions.history import build_conversation
from chatstack.sessions.store import Turn
from chatstack.text.chat_template import Message, render_chat, render_message

SYSTEM = "Be brief."
HISTORY = [Turn(f"question {i}", f"answer {i}") for i in range(5)]


def count_chars(text: str) -> int:
    return len(text)


def count_words(text: str) -> int:
    return len(text.split())


def cost_of(messages: list[Message]) -> int:
    return len(render_chat(messages, add_generation_prompt=True))


def turn_cost(turn: Turn) -> int:
    return len(render_message(Message("user", turn.user))) + len(render_message(Message("assistant", turn.assistant)))


def fixed_cost(system: str | None, user: str) -> int:
    head = [Message("system", system)] if system else []
    return cost_of([*head, Message("user", user)])


def build(budget: int, system: str | None = SYSTEM, history: list[Turn] = HISTORY, user: str = "new?") -> list[Message]:
    return build_conversation(system, history, user, budget, count_chars)


def kept_turns(messages: list[Message]) -> list[Turn]:
    middle = [m for m in messages if m.role != "system"][:-1]
    assert [m.role for m in middle] == ["user", "assistant"] * (len(middle) // 2)  # never a split turn
    return [Turn(u.content, a.content) for u, a in zip(middle[::2], middle[1::2])]


def test_everything_fits_in_order():
    messages = build(budget=10_000)
    assert messages[0] == Message("system", SYSTEM)
    assert kept_turns(messages) == HISTORY
    assert messages[-1] == Message("user", "new?")


@pytest.mark.parametrize("n_kept", range(len(HISTORY) + 1))
def test_keeps_the_newest_turns_that_fit(n_kept):
    newest = HISTORY[len(HISTORY) - n_kept :]
    budget = fixed_cost(SYSTEM, "new?") + sum(map(turn_cost, newest))
    messages = build(budget)  # exact fit: n_kept turns use every token
    assert kept_turns(messages) == newest
    assert cost_of(messages) == budget
    if n_kept > 0:
        assert kept_turns(build(budget - 1)) == newest[1:]  # one token less drops the oldest kept turn


def test_rendered_prompt_never_exceeds_the_budget():
    floor = fixed_cost(SYSTEM, "new?")
    for budget in range(floor, floor + sum(map(turn_cost, HISTORY)) + 5):
        assert cost_of(build(budget)) <= budget


def test_a_large_old_turn_is_dropped_whole_and_stops_the_walk():
    history = [Turn("small", "small"), Turn("huge " * 50, "huge " * 50), Turn("recent", "recent")]
    budget = fixed_cost(SYSTEM, "new?") + turn_cost(history[2]) + turn_cost(history[0])
    messages = build(budget, history=history)
    # the oldest turn would fit, but keeping it without the turn after it would leave a gap
    assert kept_turns(messages) == [history[2]]


def test_system_and_user_alone_over_budget_is_rejected():
    needed = fixed_cost(SYSTEM, "new?")
    with pytest.raises(ValueError, match="text_input") as info:
        build(needed - 1)
    assert str(needed) in str(info.value) and str(needed - 1) in str(info.value)


def test_system_and_user_exactly_at_budget_keep_no_history():
    assert build(fixed_cost(SYSTEM, "new?")) == [Message("system", SYSTEM), Message("user", "new?")]


@pytest.mark.parametrize("system", [None, ""])
def test_no_system_prompt(system):
    budget = fixed_cost(None, "new?") + turn_cost(HISTORY[-1])
    messages = build(budget, system=system)
    assert [m.role for m in messages] == ["user", "assistant", "user"]
    assert kept_turns(messages) == HISTORY[-1:]


def test_empty_history():
    assert build(10_000, history=[]) == [Message("system", SYSTEM), Message("user", "new?")]


def test_works_with_a_word_counter():
    # 6 words for system + user + generation prompt, 6 per turn
    messages = build_conversation(SYSTEM, HISTORY, "new?", 18, count_words)
    assert count_words(render_chat(messages)) == 18
    assert kept_turns(messages) == HISTORY[-2:]
