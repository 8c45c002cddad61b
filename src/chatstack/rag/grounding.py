"""Grounding check: how well each answer sentence is supported by the retrieved passages.

A sentence's support combines the best cosine similarity between its embedding and any
passage sentence (or whole passage: the index's vector of it when retrieval passed one along)
with the share of its content words that occur in the passages. The answer is grounded when
enough of its sentences are supported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from chatstack.rag.retriever import Passage

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9])|\n{2,}")
_WORD = re.compile(r"[a-z0-9_]+")
STOPWORDS = frozenset(
    "a an the and or but if then else of to in on at by for with from as is are was were be been being it its "
    "this that these those there here which who whom whose what when where why how can could may might must "
    "shall should will would do does did done not no so than too very also just only into out over under about "
    "you your we our they their he she his her them us i me my has have had such any all each other some more "
    "most one two use used using".split()
)


@dataclass(frozen=True)
class GroundingParams:
    similarity_weight: float = 0.6  # the rest of the weight goes to lexical overlap
    sentence_threshold: float = 0.5  # a sentence is supported at or above this score
    min_supported_share: float = 0.75  # grounded: at least this share of sentences supported

    def __post_init__(self) -> None:
        for name in ("similarity_weight", "sentence_threshold", "min_supported_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class SentenceSupport:
    sentence: str
    similarity: float
    overlap: float
    score: float
    supported: bool


@dataclass(frozen=True)
class GroundingReport:
    score: float  # mean sentence support in [0, 1]
    grounded: bool
    sentences: tuple[SentenceSupport, ...]


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def content_words(text: str) -> set[str]:
    return set(word_terms(text))


def word_terms(text: str) -> list[str]:
    """Stemmed content words of `text` in order, repeats kept (stopwords and 1–2 letter words left out)."""
    return [stem(w) for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in STOPWORDS]


def stem(word: str) -> str:
    """A crude plural/verb stem, enough to match "lists" with "list" and "remove" with "removing"."""
    for suffix in ("ies", "es", "s", "ed", "ing"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) >= 5 else word


def lexical_overlap(sentence: str, vocabulary: set[str]) -> float:
    words = content_words(sentence)
    return len(words & vocabulary) / len(words) if words else 1.0


def check_grounding(answer: str, passages: list[Passage], embedder,
                    params: GroundingParams = GroundingParams()) -> GroundingReport:
    """Score `answer` against `passages` with `embedder` (anything with `embed(texts) -> (N, dim)` unit vectors)."""
    sentences = split_sentences(answer)
    if not sentences:  # an empty or whitespace answer takes nothing from the passages: not grounded
        return GroundingReport(0.0, False, ())
    if not passages:
        unsupported = tuple(SentenceSupport(s, 0.0, 0.0, 0.0, False) for s in sentences)
        return GroundingReport(0.0, False, unsupported)
    dim = getattr(embedder, "dim", None)
    indexed = [p.vector for p in passages if len(p.vector) == dim]  # the index's vectors: not embedded again
    units = [p.text for p in passages if len(p.vector) != dim]
    units += [s for p in passages for s in split_sentences(p.text)]
    vectors = embedder.embed(sentences + units)  # (S + U, dim), unit length
    if indexed:
        vectors = np.concatenate([vectors, np.asarray(indexed, dtype=np.float32)])
    similarity = (vectors[: len(sentences)] @ vectors[len(sentences):].T).max(axis=1)  # (S,)
    vocabulary = set().union(*(content_words(p.text) for p in passages))
    supports = []
    for sentence, sim in zip(sentences, np.clip(similarity, 0.0, 1.0)):
        overlap = lexical_overlap(sentence, vocabulary)
        score = params.similarity_weight * float(sim) + (1 - params.similarity_weight) * overlap
        supports.append(SentenceSupport(sentence, float(sim), overlap, score, score >= params.sentence_threshold))
    share = sum(s.supported for s in supports) / len(supports)
    score = sum(s.score for s in supports) / len(supports)
    return GroundingReport(score, share >= params.min_supported_share, tuple(supports))
