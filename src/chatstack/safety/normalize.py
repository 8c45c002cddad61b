"""Undo obfuscation before classifying: one canonical text plus decoded variants.

Attackers hide a request behind zero-width characters, look-alike letters from
other scripts, leetspeak, spaced-out letters, base64 or rot13. `normalize_text`
returns the canonical form and every decoded variant; the classifier scores all
of them and keeps the worst, so an obfuscation can only add signal, never hide it.
Work is bounded: inputs longer than `max_chars` are rejected with a ValueError
that names the field.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from dataclasses import dataclass

# Cyrillic / Greek / other look-alikes that NFKC leaves alone → Latin.
_CONFUSABLES = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s",
    "ԁ": "d", "ɡ": "g", "һ": "h", "ӏ": "l", "ո": "n", "ս": "u", "ԝ": "w", "к": "k", "м": "m", "т": "t",
    "в": "b", "н": "h", "ь": "b", "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O",
    "Р": "P", "С": "C", "Т": "T", "Х": "X", "У": "Y", "Ѕ": "S", "І": "I", "Ј": "J",
    "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u",
    "χ": "x", "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N",
    "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "ı": "i", "ł": "l", "ø": "o", "đ": "d",
})
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
                       "@": "a", "$": "s", "!": "i", "|": "l", "+": "t", "€": "e"})
_LEET_CHARS = frozenset("01345789@$!|+€")
# "b o m b", "k.i.l.l", "m-e-t-h": four or more single letters joined by one separator.
_SPACED = re.compile(r"\b(?:[a-z][ .\-_*]){3,}[a-z]\b")
_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
_HEX = re.compile(r"\b(?:[0-9a-fA-F]{2}){8,}\b")
_COMMON_WORDS = frozenset(
    "the a an to of and or how do i you is are in for on with make me what can it this that my your "
    "write give tell be not from all kill build bomb please now step steps will who as if at by so get "
    "was he she they we us them their there here his her its have has no any just like want need".split()
)


@dataclass(frozen=True)
class NormalizedText:
    """`canonical` is always classified; `variants` are extra decodings (may be empty)."""

    canonical: str
    variants: tuple[str, ...]

    @property
    def all_texts(self) -> tuple[str, ...]:
        return (self.canonical, *self.variants)


def check_length(text: str, field: str, max_chars: int) -> None:
    if len(text) > max_chars:
        raise ValueError(f"{field} is {len(text)} characters long; the moderation limit is {max_chars} "
                         f"(safety.max_input_chars)")


def strip_invisible(text: str) -> str:
    """Drop format characters and lone surrogates; turn other controls into spaces."""
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if category in ("Cf", "Cs"):  # format chars (zero-width, bidi), lone surrogates
            continue
        out.append(" " if category in ("Cc", "Zl", "Zp") and ch not in "\n\t" else ch)
    return "".join(out)


def _strip_marks(text: str) -> str:
    """'bömb' → 'bomb': drop combining marks (also Zalgo stacks) after NFKD."""
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


def canonicalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", strip_invisible(text))
    text = _strip_marks(text.translate(_CONFUSABLES)).casefold()
    return " ".join(text.split())


def _is_leet_word(word: str) -> bool:
    """'b0mb', 'h4ck!' yes; 'range(10)', 'utf-8', '3.11' no: the decoded word must read as letters."""
    core = word.rstrip(".,;:?")
    if not any(c.isalpha() for c in core) or not any(c in _LEET_CHARS for c in core):
        return False
    return core.translate(_LEET).isalpha()


def deleet(text: str) -> str:
    """Map leet digits/symbols to letters inside words that also hold letters; join spaced letters."""
    words = text.split(" ")
    mixed = [_is_leet_word(w) for w in words]
    # in mostly-leet text, short all-digit words are leet too ("70" → "to", "4" → "a")
    mostly_leet = sum(mixed) >= max(2, 0.3 * len(words))
    text = " ".join(
        w.translate(_LEET) if m or (mostly_leet and len(w) <= 2 and w.isdigit()) else w for w, m in zip(words, mixed)
    )
    return _SPACED.sub(lambda m: re.sub(r"[ .\-_*]", "", m.group(0)), text)


def _looks_like_text(decoded: str) -> bool:
    printable = sum(ch.isprintable() for ch in decoded)
    return len(decoded) >= 4 and printable / len(decoded) > 0.95 and any(ch.isalpha() for ch in decoded)


def _decode_base64(token: str) -> str | None:
    padded = token + "=" * (-len(token) % 4)
    for decoder in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            decoded = decoder(padded).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if _looks_like_text(decoded):
            return decoded
    return None


def _decode_hex(token: str) -> str | None:
    try:
        decoded = bytes.fromhex(token).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    return decoded if _looks_like_text(decoded) else None


def _common_word_count(text: str) -> int:
    return sum(word in _COMMON_WORDS for word in re.findall(r"[a-z]+", text))


def decoded_payloads(raw: str, canonical: str, max_payloads: int = 4) -> list[str]:
    """base64/hex tokens found in the raw text, and the rot13 reading when it reads as English."""
    payloads = []
    for token in _BASE64.findall(raw)[:max_payloads]:
        decoded = _decode_base64(token)
        if decoded is not None:
            payloads.append(decoded)
    for token in _HEX.findall(raw)[:max_payloads]:
        decoded = _decode_hex(token)
        if decoded is not None:
            payloads.append(decoded)
    rotated = codecs.decode(canonical, "rot13")
    rotated_common = _common_word_count(rotated)
    announced = "rot13" in canonical or "rot-13" in canonical
    reads_as_english = rotated_common >= 3 and rotated_common >= 0.15 * len(rotated.split())
    if announced or (reads_as_english and rotated_common > 2 * _common_word_count(canonical)):
        payloads.append(rotated)
    return payloads


def normalize_text(text: str, field: str = "query", max_chars: int = 12000, depth: int = 2) -> NormalizedText:
    """Canonical form + de-leeted form + decoded payloads (recursively, `depth` levels)."""
    check_length(text, field, max_chars)
    canonical = canonicalize(text)
    variants: list[str] = []
    leet = deleet(canonical)
    if leet != canonical:
        variants.append(leet)
    if depth > 0:
        for payload in decoded_payloads(strip_invisible(text), canonical):
            inner = normalize_text(payload, field, max_chars, depth - 1)
            variants.extend(t for t in inner.all_texts if t not in variants and t != canonical)
    return NormalizedText(canonical, tuple(variants))
