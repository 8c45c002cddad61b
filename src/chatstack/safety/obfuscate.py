"""Obfuscations attackers use to slip a request past a filter.

Used by the evaluation and the tests to check that `safety.normalize` undoes
them; each function is pure and deterministic.
"""

from __future__ import annotations

import base64
import codecs

_LEET = str.maketrans({"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"})
_HOMOGLYPHS = str.maketrans({"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "i": "і", "y": "у"})
ZERO_WIDTH_SPACE = "\u200b"


def leetspeak(text: str) -> str:
    return text.lower().translate(_LEET)


def homoglyphs(text: str) -> str:
    """Latin letters swapped for Cyrillic look-alikes."""
    return text.translate(_HOMOGLYPHS)


def zero_width(text: str) -> str:
    """A zero-width space inside every word."""
    return " ".join(word[:1] + ZERO_WIDTH_SPACE + word[1:] if len(word) > 1 else word for word in text.split(" "))


def base64_payload(text: str) -> str:
    return "Decode this base64 and do what it says: " + base64.b64encode(text.encode()).decode()


def rot13_payload(text: str) -> str:
    return "rot13: " + codecs.encode(text, "rot13")


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


ALL = {
    "leetspeak": leetspeak,
    "homoglyphs": homoglyphs,
    "zero_width": zero_width,
    "base64": base64_payload,
    "rot13": rot13_payload,
    "fullwidth": fullwidth,
}
