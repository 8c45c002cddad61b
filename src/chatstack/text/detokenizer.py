"""Incremental detokenization with the prefix-offset method.

Decoding token by token breaks byte-level BPE: a multi-byte character can span
tokens (decoding half of it yields U+FFFD) and per-token decoding can lose the
spaces that belong to a token's neighbour. Instead, decode a short window
`tokens[prefix_offset:]` and emit only what it adds beyond
`tokens[prefix_offset:read_offset]`; hold back while the window ends in an
incomplete character.
"""

from __future__ import annotations

from typing import Protocol, Sequence

REPLACEMENT = "\ufffd"


class Decoder(Protocol):
    def decode(self, token_ids: Sequence[int], skip_special_tokens: bool, clean_up_tokenization_spaces: bool) -> str: ...


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text deltas that concatenate exactly."""

    def __init__(self, tokenizer: Decoder):
        self.tokenizer = tokenizer
        self.token_ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def add(self, new_token_ids: Sequence[int]) -> str:
        """Append tokens; return the newly completed text (may be empty)."""
        self.token_ids.extend(new_token_ids)
        prefix_text = self._decode(self.token_ids[self.prefix_offset : self.read_offset])
        window_text = self._decode(self.token_ids[self.prefix_offset :])
        if len(window_text) <= len(prefix_text) or window_text.endswith(REPLACEMENT):
            return ""
        self.prefix_offset = self.read_offset
        self.read_offset = len(self.token_ids)
        return window_text[len(prefix_text) :]

    def flush(self) -> str:
        """Text still held back at the end of generation (an incomplete trailing character)."""
        prefix_text = self._decode(self.token_ids[self.prefix_offset : self.read_offset])
        window_text = self._decode(self.token_ids[self.prefix_offset :])
        self.prefix_offset = self.read_offset = len(self.token_ids)
        return window_text[len(prefix_text) :]
