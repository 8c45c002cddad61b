"""Per-category harm scores for a (normalised) text.

Three voters, fused per category:
- an embedding head: LogisticRegression over MiniLM sentence embeddings (ONNX)
  (generalises across phrasings);
- a lexical head: LogisticRegression over character n-gram TF-IDF (robust to
  typos and residual obfuscation);
- the regex rules (`safety.rules`: certain hits score 1.0) and, for
  hate/harassment, the packaged `alt-profanity-check` model.
Long texts are scored sentence by sentence so a request hidden deep in a long
input is scored on its own; the score of a category is its maximum over all
normalised variants and chunks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from chatstack.safety.normalize import NormalizedText
from chatstack.safety.policy import CATEGORIES
from chatstack.safety.rules import matched_categories

if TYPE_CHECKING:
    from chatstack.rag.embedder import OnnxEmbedder

WHOLE_CHARS = 512  # up to here a text is one piece (an output window is 400); longer: by sentence
CHUNK_CHARS = 240
CHUNK_OVERLAP = 80  # a sentence longer than CHUNK_CHARS is cut into overlapping windows
EMBEDDING_WEIGHT = 0.6  # fused = w * embedding head + (1 - w) * lexical head
PROFANITY_WEIGHT = 0.4  # hate score = max(hate, (1 - p) * hate + p * profanity)
_SENTENCE_END = re.compile(r"(?<=[.!?;:\n])\s*")
PROFANITY_GATE = 0.15  # profanity is only consulted when the hate score is already above this


@dataclass
class SafetyHead:
    """The trained parts, saved together as one joblib artifact."""

    vectorizer: object  # sklearn TfidfVectorizer
    lexical: object  # sklearn LogisticRegression over TF-IDF
    semantic: object | None  # sklearn LogisticRegression over embeddings; None: lexical only
    labels: tuple[str, ...]
    data_digest: str = ""


@dataclass(frozen=True)
class CategoryScores:
    scores: dict[str, float]
    rule_hits: tuple[str, ...] = field(default=())

    def top(self, categories: tuple[str, ...] = CATEGORIES) -> tuple[str, float]:
        name = max(categories, key=lambda c: self.scores.get(c, 0.0))
        return name, self.scores.get(name, 0.0)


def chunks(text: str, size: int = CHUNK_CHARS, overlap: int = CHUNK_OVERLAP) -> list[str]:
    """Overlapping windows of `size` characters; one window for short texts."""
    if len(text) <= size:
        return [text]
    step = size - overlap
    return [text[start:start + size] for start in range(0, len(text) - overlap, step)]


def pieces(text: str) -> list[str]:
    """What gets scored: a text up to WHOLE_CHARS whole; a longer one as sentences and sentence pairs.

    Scoring sentences on their own keeps one harmful sentence from being diluted
    by pages of harmless context; pairs catch a request split over two sentences.
    Repeated sentences are scored once.
    """
    if len(text) <= WHOLE_CHARS:
        return [text]
    sentences = [piece for sentence in _SENTENCE_END.split(text) if sentence.strip() for piece in chunks(sentence)]
    pairs = [f"{a} {b}" for a, b in zip(sentences, sentences[1:])]
    return list(dict.fromkeys(sentences + pairs))


def _profanity(texts: list[str]) -> float:
    from profanity_check import predict_prob

    return float(np.max(predict_prob(texts)))


class SafetyClassifier:
    def __init__(self, head: SafetyHead, embedder: "OnnxEmbedder | None"):
        if head.semantic is not None and embedder is None:
            raise ValueError("the safety head has an embedding part; pass an embedder")
        self.head = head
        self.embedder = embedder if head.semantic is not None else None
        self._columns = [head.labels.index(c) if c in head.labels else None for c in CATEGORIES]

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """(N, len(labels)) fused class probabilities."""
        lexical = self.head.lexical.predict_proba(self.head.vectorizer.transform(texts))
        if self.embedder is None:
            return lexical
        semantic = self.head.semantic.predict_proba(self.embedder.embed(texts))
        return EMBEDDING_WEIGHT * semantic + (1 - EMBEDDING_WEIGHT) * lexical

    def score(self, text: NormalizedText) -> CategoryScores:
        scored = [piece for variant in text.all_texts for piece in pieces(variant)]
        probs = self.probabilities(scored).max(axis=0)  # (len(labels),)
        scores = {c: float(probs[i]) if i is not None else 0.0 for c, i in zip(CATEGORIES, self._columns)}
        hits = tuple(dict.fromkeys(hit for variant in text.all_texts for hit in matched_categories(variant)))
        for hit in hits:
            scores[hit] = 1.0
        hate = scores["hate_harassment"]
        if hate > PROFANITY_GATE:
            scores["hate_harassment"] = max(hate, (1 - PROFANITY_WEIGHT) * hate + PROFANITY_WEIGHT * _profanity(scored))
        return CategoryScores(scores, hits)
