"""Cheap document-quality heuristics: length, repetition, and how much of it is prose."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from chatstack.curation.dedup import normalized_words

_COMMON_ENGLISH = frozenset(
    "the of and to a in is it that for as with be on not this are by or an from at which can if you".split()
)


@dataclass(frozen=True)
class HeuristicConfig:
    min_words: int = 20
    max_words: int = 100_000
    max_duplicate_line_fraction: float = 0.3
    max_top_trigram_fraction: float = 0.2
    min_common_word_fraction: float = 0.05  # crude "is this English prose" check

    def __post_init__(self) -> None:
        if not 0 < self.min_words <= self.max_words:
            raise ValueError(f"min_words must be in (0, max_words={self.max_words}], got {self.min_words}")
        for name in ("max_duplicate_line_fraction", "max_top_trigram_fraction", "min_common_word_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


def duplicate_line_fraction(text: str) -> float:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return 0.0
    return 1 - len(set(lines)) / len(lines)


def top_trigram_fraction(words: list[str]) -> float:
    trigrams = Counter(zip(words, words[1:], words[2:]))
    if not trigrams:
        return 0.0
    return trigrams.most_common(1)[0][1] * 3 / len(words)


def rejection_reason(text: str, cfg: HeuristicConfig) -> str | None:
    """Why `text` fails the heuristics, or None when it passes."""
    words = normalized_words(text)
    if len(words) < cfg.min_words:
        return "too_short"
    if len(words) > cfg.max_words:
        return "too_long"
    if duplicate_line_fraction(text) > cfg.max_duplicate_line_fraction:
        return "repeated_lines"
    if top_trigram_fraction(words) > cfg.max_top_trigram_fraction:
        return "repeated_ngrams"
    if sum(w in _COMMON_ENGLISH for w in words) / len(words) < cfg.min_common_word_fraction:
        return "not_prose"
    return None
