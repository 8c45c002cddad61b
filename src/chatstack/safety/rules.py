"""A rule-based first screen for user turns.

Regular expressions for the clearest cases: attempts to override the system
prompt (jailbreak / prompt injection, many-shot fake dialogues), requests for
weapons or malware, and threats of violence. They run on normalised text
(`safety.normalize`) and act as a certain vote next to the trained classifier
(`safety.classifier`); category names are those of `safety.policy`.
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
    "weapons_drugs": (
        r"\bhow (do i|to|can i) (make|build|assemble) (a |an )?(bomb|pipe bomb|explosive device|explosives|nerve agent|bioweapon)(?![\w-])",
        r"\b(synthesi[sz]e|make) (sarin|vx|ricin|anthrax)\b",
    ),
    "malware_cyber": (
        r"\b(write|create|build) (me )?(a |an )?(ransomware|keylogger|computer virus|botnet)\b",
    ),
    "violence": (
        r"\b(i will|i am going to|i['’]m going to|i['’]ll) (kill|murder|shoot|stab) (you|him|her|them|everyone)\b",
    ),
}

# Many-shot jailbreaks paste a long fake dialogue; a real user turn rarely holds this many role labels.
_ROLE_LABEL = re.compile(r"(?:^|\n|\s)(?:user|human|assistant|ai|q|a)\s*:", re.IGNORECASE)
MANY_SHOT_TURNS = 8

_COMPILED = {category: [re.compile(p, re.IGNORECASE) for p in patterns] for category, patterns in _RULES.items()}


@dataclass(frozen=True)
class Verdict:
    blocked: bool
    category: str = ""
    reason: str = ""


ALLOWED = Verdict(blocked=False)


def matched_categories(text: str) -> list[str]:
    """Categories whose rules match `text` (in rule order)."""
    normalized = " ".join(text.split())
    hits = [category for category, patterns in _COMPILED.items() if any(p.search(normalized) for p in patterns)]
    if "jailbreak" not in hits and len(_ROLE_LABEL.findall(text)) >= MANY_SHOT_TURNS:
        hits.append("jailbreak")
    return hits


def screen_text(text: str) -> Verdict:
    """Block `text` when any rule matches; the reason names the category, not the match."""
    hits = matched_categories(text)
    if hits:
        return Verdict(True, hits[0], f"the message was blocked by the {hits[0]} input rule")
    return ALLOWED


REFUSAL = "I can't help with that request."
