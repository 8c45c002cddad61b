"""Structure-aware chunking with token-based size and overlap, and stable chunk ids.

Chunks never cross a section boundary. Inside a section, a chunk holds at most
`max_tokens` tokens of the embedder's tokenizer and ends, by preference, at a paragraph
break, else at a sentence end, in its second half; the next chunk starts
`overlap_tokens` earlier (snapped to a word start) so no sentence is cut off from
its context.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

from chatstack.rag.documents import Document

# text → (start, end) character offsets of its tokens, in order
TokenOffsets = Callable[[str], list[tuple[int, int]]]

PARAGRAPH, SENTENCE, LINE, WORD = 4, 3, 2, 1


@dataclass(frozen=True)
class ChunkingParams:
    max_tokens: int = 200
    overlap_tokens: int = 40

    def __post_init__(self) -> None:
        check_chunk_sizes(self.max_tokens, self.overlap_tokens)


def check_chunk_sizes(max_tokens: int, overlap_tokens: int, names: tuple[str, str] = ("max_tokens", "overlap_tokens")):
    """The bounds every chunk size setting shares (ingest, the deployment config, the reader data),
    with the error naming the caller's own fields."""
    size, overlap = names
    if not 16 <= max_tokens <= 512:
        raise ValueError(f"{size} must be in [16, 512], got {max_tokens}")
    if not 0 <= overlap_tokens <= max_tokens // 2:
        raise ValueError(f"{overlap} must be in [0, {size}/2={max_tokens // 2}], got {overlap_tokens}")


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    tenant: str
    source: str
    title: str
    section: str
    position: int  # index of the chunk within its document
    text: str

    @property
    def embedding_text(self) -> str:
        """What is embedded: the text with its title and section, which carry much of its meaning."""
        heading = f"{self.title} > {self.section}" if self.section else self.title
        return f"{heading}\n{self.text}"


def chunk_id(tenant: str, source: str, position: int, section: str, text: str) -> str:
    """Stable id: the same content at the same place gets the same id on every ingest."""
    digest = hashlib.sha256("\x00".join((tenant, source, str(position), section, text)).encode("utf-8"))
    return digest.hexdigest()[:32]


def chunk_document(document: Document, offsets: TokenOffsets, params: ChunkingParams, tenant: str) -> list[Chunk]:
    chunks: list[Chunk] = []
    for section in document.sections:
        for start, end in split_spans(section.text, offsets(section.text), params):
            text = section.text[start:end].strip()
            if not text:
                continue
            position = len(chunks)
            chunks.append(Chunk(chunk_id(tenant, document.source, position, section.heading, text), tenant,
                                document.source, document.title, section.heading, position, text))
    return chunks


def split_spans(text: str, offsets: list[tuple[int, int]], params: ChunkingParams) -> list[tuple[int, int]]:
    """Character spans of the chunks of one section."""
    n = len(offsets)
    if n == 0:
        return []
    breaks = [0] + [_break_strength(text, offsets[i - 1][1], offsets[i][0]) for i in range(1, n)]
    spans = []
    start = 0
    while True:
        end = _chunk_end(breaks, start, n, params.max_tokens)
        spans.append((offsets[start][0], offsets[end - 1][1]))
        if end == n:
            return spans
        start = _word_start(breaks, max(end - params.overlap_tokens, start + 1), end)


def _break_strength(text: str, previous_end: int, next_start: int) -> int:
    """How good a place to cut the gap between two tokens is (0: inside a word)."""
    gap = text[previous_end:next_start]
    if "\n\n" in gap or "\n\r\n" in gap:
        return PARAGRAPH
    if gap and text[previous_end - 1] in ".!?:;":
        return SENTENCE
    if "\n" in gap:
        return LINE
    return WORD if gap else 0


def _chunk_end(breaks: list[int], start: int, n: int, max_tokens: int) -> int:
    """Exclusive end token: the strongest break in the window's second half, latest first."""
    hard = min(start + max_tokens, n)
    if hard == n:
        return n
    best, best_strength = hard, 0
    for i in range(hard, start + max_tokens // 2, -1):
        if breaks[i] > best_strength:
            best, best_strength = i, breaks[i]
            if best_strength == PARAGRAPH:
                break
    return best


def _word_start(breaks: list[int], start: int, limit: int) -> int:
    """Move `start` forward to a token that begins a word (whitespace before it)."""
    for i in range(start, limit):
        if breaks[i] or i == 0:
            return i
    return start
