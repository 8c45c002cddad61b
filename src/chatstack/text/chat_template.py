"""The chatstack chat format.

One format is used everywhere: training (SFT marks the assistant turns with
`{% generation %}` so only they carry loss), the HF tokenizer's `chat_template`
and the serving path (`render_chat`, a pure-Python renderer that produces the
same string without Jinja).

    <|system|>\n{system}<|end|>\n<|user|>\n{user}<|end|>\n<|assistant|>\n{reply}<|end|>\n
"""

from __future__ import annotations

import json
from dataclasses import dataclass

BOS = "<|bos|>"
EOS = "<|endoftext|>"
END_OF_TURN = "<|end|>"
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
SPECIAL_TOKENS = [EOS, BOS, END_OF_TURN, *ROLE_TOKENS.values()]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|assistant|>\n' }}{% generation %}{{ message['content'] + '<|end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Message:
    """One turn of a conversation."""

    role: str
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLE_TOKENS:
            raise ValueError(f"role must be one of {sorted(ROLE_TOKENS)}, got {self.role!r}")


def render_message(message: Message) -> str:
    return f"{ROLE_TOKENS[message.role]}\n{message.content}{END_OF_TURN}\n"


def render_chat(messages: list[Message], add_generation_prompt: bool = True) -> str:
    """Render a conversation exactly as `CHAT_TEMPLATE` does."""
    text = "".join(render_message(m) for m in messages)
    if add_generation_prompt:
        text += f"{ROLE_TOKENS['assistant']}\n"
    return text


def messages_to_json(messages: list[Message]) -> str:
    return json.dumps([{"role": m.role, "content": m.content} for m in messages], ensure_ascii=False)


def messages_from_json(text: str) -> list[Message]:
    try:
        return [Message(str(item["role"]), str(item["content"])) for item in json.loads(text)]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"messages is not a JSON list of {{role, content}}: {exc}") from None
