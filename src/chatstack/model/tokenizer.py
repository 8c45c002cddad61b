"""Byte-level BPE tokenizer for the demo model, trained on the corpus.

Byte-level BPE can encode any Unicode string and decode it back exactly; the
chat-format special tokens are registered as added tokens so each one is a
single id wherever it appears in text. The returned HF tokenizer carries the
chat template, so `apply_chat_template` renders exactly like `render_chat`.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from chatstack.text.chat_template import (
    BOS,
    CHAT_TEMPLATE,
    END_OF_TURN,
    EOS,
    ROLE_TOKENS,
    SPECIAL_TOKENS,
)

MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)  # every byte plus the special tokens


def build_bpe_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a raw `tokenizers` byte-level BPE model; special tokens get ids 0..n-1."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096) -> PreTrainedTokenizerFast:
    """A chat-ready HF tokenizer: `<|end|>` ends a turn, `<|endoftext|>` pads."""
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(f"vocab_size must be >= {MIN_VOCAB_SIZE}, got {vocab_size}")
    return PreTrainedTokenizerFast(
        tokenizer_object=build_bpe_tokenizer(texts, vocab_size),
        bos_token=BOS,
        eos_token=END_OF_TURN,
        pad_token=EOS,
        extra_special_tokens=list(ROLE_TOKENS.values()),
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )


def bytes_per_token(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str]) -> float:
    """UTF-8 bytes per token over `texts` (higher compresses better; raw bytes would be 1.0)."""
    total_bytes = total_tokens = 0
    for text in texts:
        total_bytes += len(text.encode("utf-8"))
        total_tokens += len(tokenizer.encode(text, add_special_tokens=False))
    if total_tokens == 0:
        raise ValueError("texts must contain at least one non-empty text")
    return total_bytes / total_tokens
