"""Turn rated answers into DPO preference pairs (TRL's conversational format).

- thumbs down with a correction: chosen = the correction, rejected = the answer;
- thumbs down without one: paired with a thumbs-up answer to the same conversation, if any.
Thumbs-up answers with no thumbs-down partner give no pair.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatstack.feedback.store import RatedAnswer
from chatstack.text.chat_template import Message, messages_to_json


@dataclass(frozen=True)
class PreferencePair:
    prompt: list[Message]
    chosen: str
    rejected: str
    source: str  # "correction" or "rating"

    def to_record(self) -> dict:
        return {
            "prompt": [{"role": m.role, "content": m.content} for m in self.prompt],
            "chosen": [{"role": "assistant", "content": self.chosen}],
            "rejected": [{"role": "assistant", "content": self.rejected}],
            "source": self.source,
        }


def preference_pairs(rated: list[RatedAnswer]) -> list[PreferencePair]:
    liked: dict[str, list[RatedAnswer]] = {}
    for answer in rated:
        if answer.rating > 0:
            liked.setdefault(messages_to_json(answer.prompt), []).append(answer)
    pairs = []
    for answer in rated:
        if answer.rating > 0:
            continue
        if answer.correction is not None and answer.correction != answer.answer:
            pairs.append(PreferencePair(answer.prompt, answer.correction, answer.answer, "correction"))
            continue
        for good in liked.get(messages_to_json(answer.prompt), []):
            if good.answer != answer.answer:
                pairs.append(PreferencePair(answer.prompt, good.answer, answer.answer, "rating"))
                break
    return pairs
