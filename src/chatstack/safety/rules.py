"""A rule-based first screen for user turns.

Regular expressions for the clearest cases: attempts to override the system
prompt (jailbreak / prompt injection), requests for weapons or malware, and
threats of violence. Classifier-based moderation replaces this screen; the
verdict type stays the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RULES: dict[str, tuple[str, ...]] = {
    "jailbreak": (
        r"\bignore (all |any )?(the |your )?(previous|prior|above|earlier) (instructions|rules|prompts?)\b",
        r"\bdisregard (all |any )?(the |your )?(previous|prior|system) (instructions|rules|prompt)\b",
        r"\b(reveal|print|show|repeat) (me )?(your|the) (system prompt|hidden instructions)\b",
        r"\byou are (now )?(DAN|in developer mode)\b",
        r"\bpretend (that )?you have no (rules|restrictions|guidelines)\b",
    ),
    "weapons": (
        r"\bhow (do i|to|can i) (make|build|assemble) (a |an )?(bomb|pipe bomb|explosive device|explosives|nerve agent|bioweapon)(?![\w-])",
        r"\b(synthesi[sz]e|make) (sarin|vx|ricin|anthrax)\b",
    ),
    "malware": (
        r"\b(write|create|build) (me )?(a |an )?(ransomware|keylogger|computer virus|botnet)\b",
    ),
    "violence": (
        r"\b(i will|i am going to|i['’]m going to|i['’]ll) (kill|murder|shoot|stab) (you|him|her|them|everyone)\b",
    ),
}

_COMPILED = {category: [re.compile(p, re.IGNORECASE) for p in patterns] for category, patterns in _RULES.items()}


@dataclass(frozen=True)
class Verdict:
    blocked: bool
    category: str = ""
    reason: str = ""


ALLOWED = Verdict(blocked=False)


def screen_text(text: str) -> Verdict:
    """Block `text` when any rule matches; the reason names the category, not the match."""
    normalized = " ".join(text.split())
    for category, patterns in _COMPILED.items():
        if any(p.search(normalized) for p in patterns):
            return Verdict(True, category, f"the message was blocked by the {category} input rule")
    return ALLOWED


REFUSAL = "I can't help with that request."
