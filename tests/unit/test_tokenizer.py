"""The demo tokenizer: special tokens, exact Unicode round trip, chat template."""

from __future__ import annotations

import pytest

from chatstack.model.corpus import documents
from chatstack.model.tokenizer import MIN_VOCAB_SIZE, train_tokenizer
from chatstack.text.chat_template import BOS, END_OF_TURN, EOS, SPECIAL_TOKENS, Message, render_chat

UNICODE_SAMPLES = [
    "plain ascii",
    "héllo wörld, naïve café",
    "emoji 😀 👍🏽 🇫🇷 family 👨‍👩‍👧",
    "中文字符 日本語テキスト 한국어",
    "  leading, inner   runs and trailing spaces  ",
    "tabs\tnew\nlines\r\nand\u00a0nbsp\u200bzero-width",
    "math ∑ √ ∞ and combining e\u0301",
    "",
]

CONVERSATIONS = [
    [Message("user", "What is a list comprehension?")],
    [Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello!"),
     Message("user", "What is 中文 😀?")],
    [Message("user", "  spaces  "), Message("assistant", "multi\nline\n\nreply")],
]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(documents(max_chars=100_000), vocab_size=512)


def test_vocab_has_requested_size(tokenizer):
    assert len(tokenizer) == 512


@pytest.mark.parametrize("token", SPECIAL_TOKENS)
def test_special_token_is_one_id_inside_text(tokenizer, token):
    token_id = tokenizer.convert_tokens_to_ids(token)
    ids = tokenizer.encode(f"before{token}after", add_special_tokens=False)
    assert ids.count(token_id) == 1
    assert tokenizer.encode(token, add_special_tokens=False) == [token_id]


def test_named_special_tokens(tokenizer):
    assert tokenizer.bos_token == BOS
    assert tokenizer.eos_token == END_OF_TURN
    assert tokenizer.pad_token == EOS


def test_encode_adds_no_tokens(tokenizer):
    ids = tokenizer.encode("hello", add_special_tokens=True)
    assert tokenizer.decode(ids) == "hello"


@pytest.mark.parametrize("text", UNICODE_SAMPLES)
def test_decode_round_trips_unicode_and_spaces(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


def test_round_trip_across_special_tokens(tokenizer):
    text = render_chat(CONVERSATIONS[1])
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


@pytest.mark.parametrize("messages", CONVERSATIONS)
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_chat_template_matches_render_chat(tokenizer, messages, add_generation_prompt):
    as_dicts = [{"role": m.role, "content": m.content} for m in messages]
    rendered = tokenizer.apply_chat_template(
        as_dicts, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    assert rendered == render_chat(messages, add_generation_prompt=add_generation_prompt)


def test_too_small_vocab_is_rejected():
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["some text"], vocab_size=MIN_VOCAB_SIZE - 1)


def test_bigger_vocabulary_compresses_held_out_text_better():
    from chatstack.model.corpus import documents
    from chatstack.model.tokenizer import MIN_VOCAB_SIZE, bytes_per_token, train_tokenizer

    texts = documents(max_chars=150_000)
    held_out = ["The served model repository is rendered from templates and validated before Triton starts."]
    small = train_tokenizer(texts, vocab_size=MIN_VOCAB_SIZE)
    large = train_tokenizer(texts, vocab_size=2048)
    assert bytes_per_token(small, held_out) >= 1.0
    assert bytes_per_token(large, held_out) > 1.5 * bytes_per_token(small, held_out)
    with pytest.raises(ValueError, match="texts"):
        bytes_per_token(large, [""])
