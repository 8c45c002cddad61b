"""Incremental detokenization on a real byte-level BPE tokenizer trained here."""

from __future__ import annotations

import random

import pytest

from chatstack.model.tokenizer import MIN_VOCAB_SIZE, train_tokenizer
from chatstack.text.chat_template import END_OF_TURN, Message, render_chat
from chatstack.text.detokenizer import REPLACEMENT, IncrementalDetokenizer

CORPUS_LINES = [
    "The quick brown fox jumps over the lazy dog.",
    "Python lists are mutable; tuples are not. Use a dict for lookups.",
    "Le café est très bon: naïve façade, crème brûlée, garçon.",
    "Ångström, São Paulo, Zürich, Kraków, Dvořák, Øresund.",
    "中文字符和日本語のテキスト、한국어 문장입니다。",
    "Emoji: 😀 👍🏽 🇫🇷 👨‍👩‍👧 🎉 and more 😀😀.",
    "def double(x):\n    return x * 2  # comment\n",
]

TEXTS = [
    "Hello world",
    "The quick brown fox.",
    " leading space",
    "trailing spaces   ",
    "multiple   inner    spaces",
    "  ",
    "space before punctuation . , ; ! ? and ' quotes '",
    "line one\nline two\n\n  indented\n",
    "\ttab\tseparated\r\n",
    "café naïve crème brûlée",
    "e\u0301 a\u0300 o\u0308 combining marks",
    "中文 漢字 日本語のテキスト 한국어",
    "emoji 😀 👍🏽 🇫🇷 👨‍👩‍👧 🦄🦀",
    "😀",
    "🦄 unseen emoji at the start",
    "mixed: x=1 → y=2 ✓ ∑ √ ∞ 中 😀 end.",
    "def f(x):\n    return x  # 😀\n",
]


@pytest.fixture(scope="module")
def tokenizer():
    lines = [f"{CORPUS_LINES[i % len(CORPUS_LINES)]} {i}" for i in range(300)]
    return train_tokenizer(lines, vocab_size=max(MIN_VOCAB_SIZE, 400))


def full_decode(tokenizer, ids) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def stream_one_by_one(tokenizer, ids) -> tuple[list[str], str]:
    detokenizer = IncrementalDetokenizer(tokenizer)
    deltas = [detokenizer.add([token]) for token in ids]
    return deltas, detokenizer.flush()


def test_some_characters_really_span_several_tokens(tokenizer):
    """Guards the tests below: without split characters they would prove nothing."""
    ids = encode(tokenizer, "emoji 😀 👍🏽 🦄 中文")
    assert any(tokenizer.decode([i]).endswith(REPLACEMENT) for i in ids)


@pytest.mark.parametrize("text", TEXTS)
def test_deltas_concatenate_to_the_full_decode(tokenizer, text):
    ids = encode(tokenizer, text)
    deltas, tail = stream_one_by_one(tokenizer, ids)
    assert "".join(deltas) + tail == full_decode(tokenizer, ids) == text


@pytest.mark.parametrize("text", TEXTS)
def test_no_delta_contains_a_replacement_character(tokenizer, text):
    deltas, tail = stream_one_by_one(tokenizer, encode(tokenizer, text))
    for delta in [*deltas, tail]:
        assert REPLACEMENT not in delta
        assert delta.encode("utf-8").decode("utf-8") == delta


@pytest.mark.parametrize("text", TEXTS)
def test_a_complete_text_leaves_nothing_to_flush(tokenizer, text):
    _, tail = stream_one_by_one(tokenizer, encode(tokenizer, text))
    assert tail == ""


def test_space_before_punctuation_is_kept(tokenizer):
    deltas, _ = stream_one_by_one(tokenizer, encode(tokenizer, "a . b , c"))
    assert "".join(deltas) == "a . b , c"


def test_deltas_appear_as_soon_as_a_character_is_complete(tokenizer):
    ids = encode(tokenizer, "ab 😀")
    deltas, _ = stream_one_by_one(tokenizer, ids)
    assert "".join(deltas[:-1]) + deltas[-1] == "ab 😀"
    assert deltas[-1].endswith("😀")  # the last token completes the emoji and releases it
    assert all(not d.endswith(REPLACEMENT) for d in deltas)


@pytest.mark.parametrize("seed", range(5))
def test_random_chunk_sizes_give_the_same_text(tokenizer, seed):
    rng = random.Random(seed)
    text = "".join(TEXTS)
    ids = encode(tokenizer, text)
    detokenizer = IncrementalDetokenizer(tokenizer)
    pieces, start = [], 0
    while start < len(ids):
        size = rng.randint(0, 5)  # empty chunks included
        pieces.append(detokenizer.add(ids[start : start + size]))
        start += size
    pieces.append(detokenizer.flush())
    assert "".join(pieces) == text
    assert all(REPLACEMENT not in p for p in pieces)


def test_special_tokens_are_skipped(tokenizer):
    ids = encode(tokenizer, render_chat([Message("user", "Hi 😀"), Message("assistant", "Hé!")], add_generation_prompt=False))
    assert tokenizer.convert_tokens_to_ids(END_OF_TURN) in ids
    deltas, tail = stream_one_by_one(tokenizer, ids)
    assert "".join(deltas) + tail == full_decode(tokenizer, ids) == "\nHi 😀\n\nHé!\n"


def test_flush_returns_an_incomplete_trailing_character(tokenizer):
    ids = encode(tokenizer, "ok 🦄")
    cut = ids[:-1]  # the emoji's last byte never arrives
    assert full_decode(tokenizer, cut).endswith(REPLACEMENT)
    deltas, tail = stream_one_by_one(tokenizer, cut)
    assert "".join(deltas) in ("ok", "ok ")  # the space may share a token with the emoji
    assert tail.endswith(REPLACEMENT) and "".join(deltas) + tail == full_decode(tokenizer, cut)


def test_flush_releases_a_genuine_trailing_replacement_character(tokenizer):
    text = f"bad byte {REPLACEMENT}"
    detokenizer = IncrementalDetokenizer(tokenizer)
    streamed = detokenizer.add(encode(tokenizer, text))
    assert streamed + detokenizer.flush() == text
    assert detokenizer.flush() == ""


def test_detokenizer_continues_after_flush(tokenizer):
    detokenizer = IncrementalDetokenizer(tokenizer)
    first = detokenizer.add(encode(tokenizer, "one 😀")) + detokenizer.flush()
    second = detokenizer.add(encode(tokenizer, " two 中"))
    assert first + second + detokenizer.flush() == "one 😀 two 中"


@pytest.mark.parametrize("seed", range(3))
def test_arbitrary_token_sequences_still_concatenate_exactly(tokenizer, seed):
    """Sampled ids can form invalid UTF-8; the stream must still equal the full decode."""
    rng = random.Random(seed)
    for _ in range(200):
        ids = [rng.randrange(len(tokenizer)) for _ in range(rng.randint(1, 10))]
        deltas, tail = stream_one_by_one(tokenizer, ids)
        assert "".join(deltas) + tail == full_decode(tokenizer, ids), ids
