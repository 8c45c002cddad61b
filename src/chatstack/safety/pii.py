"""Find and redact personal data: pure functions, reused by training-data curation.

Each detector is a regular expression plus, where one exists, a checksum that
cuts false positives (Luhn for cards, mod-97 for IBANs, range checks for SSNs
and IPv4). Matches become typed placeholders such as `[EMAIL]`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Callable

_STREET_TYPES = (r"street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|place|pl|way|"
                 r"terrace|parkway|pkwy|highway|hwy|square|sq|circle|cir")


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    compact = re.sub(r"\s", "", text).upper()
    rotated = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rotated)) % 97 == 1


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _card_ok(match: str) -> bool:
    digits = _digits(match)
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def _ssn_ok(match: str) -> bool:
    area, group, serial = _digits(match)[:3], _digits(match)[3:5], _digits(match)[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _ipv4_ok(match: str) -> bool:
    return all(int(part) <= 255 for part in match.split("."))


def _ipv6_ok(match: str) -> bool:
    try:
        ipaddress.IPv6Address(match)
    except ValueError:
        return False
    return match.count(":") >= 2 and sum(c.isalnum() for c in match) >= 6


def _phone_ok(match: str) -> bool:
    return 7 <= len(_digits(match)) <= 15


@dataclass(frozen=True)
class PiiDetector:
    kind: str
    pattern: re.Pattern
    valid: Callable[[str], bool] = lambda match: True


# Order matters: earlier detectors claim their spans first (an IBAN is not a phone number).
DETECTORS = (
    PiiDetector("EMAIL", re.compile(r"\b[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})*\.[a-z]{2,24}\b", re.I)),
    PiiDetector("IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"), iban_valid),
    PiiDetector("CREDIT_CARD", re.compile(r"\b(?:\d[ -]?){12,18}\d\b"), _card_ok),
    PiiDetector("SSN", re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), _ssn_ok),
    PiiDetector("IP_ADDRESS", re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), _ipv4_ok),
    PiiDetector("IP_ADDRESS", re.compile(r"(?<![\w:])(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?![\w:])", re.I), _ipv6_ok),
    PiiDetector("PHONE", re.compile(
        r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]?\d{3,4}(?!\w)"), _phone_ok),
    PiiDetector("PHONE", re.compile(r"(?<![\w+])0\d(?:[ .-]?\d{2}){4}(?!\w)")),  # French-style 06 12 34 56 78
    PiiDetector("ADDRESS", re.compile(
        rf"\b\d{{1,5}}[A-Z]?(?: [A-Z][a-z]+| [A-Z]\.?){{1,4}} (?i:{_STREET_TYPES})\b\.?(?:,? (?i:apt|suite|unit) \w+)?")),
)


@dataclass(frozen=True)
class PiiSpan:
    kind: str
    start: int
    end: int


def find_pii(text: str) -> list[PiiSpan]:
    """Non-overlapping PII spans, in text order."""
    spans: list[PiiSpan] = []
    for detector in DETECTORS:
        for match in detector.pattern.finditer(text):
            overlaps = any(s.start < match.end() and match.start() < s.end for s in spans)
            if not overlaps and detector.valid(match.group(0)):
                spans.append(PiiSpan(detector.kind, match.start(), match.end()))
    return sorted(spans, key=lambda span: span.start)


def redact(text: str, spans: list[PiiSpan] | None = None) -> str:
    """Replace each PII span with its placeholder, e.g. 'mail bob@x.org' → 'mail [EMAIL]'."""
    pieces, cursor = [], 0
    for span in find_pii(text) if spans is None else spans:
        pieces += [text[cursor:span.start], f"[{span.kind}]"]
        cursor = span.end
    pieces.append(text[cursor:])
    return "".join(pieces)
