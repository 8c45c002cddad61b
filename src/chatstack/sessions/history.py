"""Fit a conversation into the context window by dropping the oldest whole turns."""

from __future__ import annotations

from typing import Callable

from chatstack.sessions.store import Turn
from chatstack.text.chat_template import Message, render_chat, render_message

TokenCounter = Callable[[str], int]


def turn_messages(turn: Turn) -> list[Message]:
    return [Message("user", turn.user), Message("assistant", turn.assistant)]


def build_conversation(
    system_prompt: str | None,
    history: list[Turn],
    user_text: str,
    prompt_budget: int,
    count_tokens: TokenCounter,
) -> list[Message]:
    """System prompt + the newest turns that fit + the user's new turn.

    `prompt_budget` is the number of tokens the rendered prompt may use. The
    system prompt and the new turn are always kept; if they alone exceed the
    budget the request is rejected.
    """
    head = [Message("system", system_prompt)] if system_prompt else []
    tail = [Message("user", user_text)]
    fixed = count_tokens(render_chat(head + tail, add_generation_prompt=True))
    if fixed > prompt_budget:
        raise ValueError(
            f"text_input is too long: the prompt needs {fixed} tokens but only {prompt_budget} "
            "fit in the context window after reserving max_tokens"
        )
    kept: list[Turn] = []
    used = fixed
    for turn in reversed(history):
        cost = sum(count_tokens(render_message(m)) for m in turn_messages(turn))
        if used + cost > prompt_budget:
            break
        kept.append(turn)
        used += cost
    middle = [m for turn in reversed(kept) for m in turn_messages(turn)]
    return head + middle + tail
