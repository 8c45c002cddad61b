"""PII redaction: typed placeholders, checksums keep look-alike numbers intact."""

from __future__ import annotations

import pytest

from chatstack.safety.pii import find_pii, iban_valid, luhn_valid, redact

REDACTED = [
    ("write to jane.doe+news@example.co.uk today", "write to [EMAIL] today"),
    ("card 4111 1111 1111 1111 please", "card [CREDIT_CARD] please"),
    ("amex 378282246310005", "amex [CREDIT_CARD]"),
    ("IBAN GB82 WEST 1234 5698 7654 32.", "IBAN [IBAN]."),
    ("pay DE89370400440532013000 now", "pay [IBAN] now"),
    ("SSN 078-05-1120", "SSN [SSN]"),
    ("host 192.168.1.20 is down", "host [IP_ADDRESS] is down"),
    ("v6 2001:db8:85a3::8a2e:370:7334 ok", "v6 [IP_ADDRESS] ok"),
    ("call +1 (555) 123-4567 now", "call [PHONE] now"),
    ("ring 020 7946 0958", "ring [PHONE]"),
    ("portable 06 12 34 56 78", "portable [PHONE]"),
    ("I live at 742 Evergreen Terrace.", "I live at [ADDRESS]"),
]

KEPT = [
    "Python 3.11 listens on port 8000",
    "sorted(range(10))[2:5]",
    "the card 4111 1111 1111 1112 fails the Luhn check",
    "version 1.2.3 and ip-like 999.300.1.1",
    "use std::vector and a::b",
    "I have 3 ideas for the road",
    "SSN-shaped but invalid: 000-12-3456",
]


@pytest.mark.parametrize(("text", "expected"), REDACTED)
def test_personal_data_becomes_a_typed_placeholder(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("text", KEPT)
def test_ordinary_numbers_are_kept(text):
    assert "[" not in redact(text) or "[CREDIT_CARD]" not in redact(text)
    assert not any(span.kind in ("CREDIT_CARD", "SSN", "IP_ADDRESS", "ADDRESS") for span in find_pii(text))


def test_checksums():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82WEST12345698765432") and not iban_valid("GB83WEST12345698765432")


def test_several_kinds_in_one_text_keep_their_order():
    text = "mail a@b.io or call 555-867-5309"
    assert [span.kind for span in find_pii(text)] == ["EMAIL", "PHONE"]
    assert redact(text) == "mail [EMAIL] or call [PHONE]"
