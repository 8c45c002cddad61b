"""Per-category harm scores for a (normalised) text, in two stages.

Stage 1 runs on every text (~1 ms of CPU):
- a fast head: one linear softmax over character n-gram TF-IDF (robust to typos
  and residual obfuscation) side by side with static MiniLM token embeddings
  (`safety.static_embedder`: word meaning without running the transformer);
- the regex rules (`safety.rules`: certain hits score 1.0).
Stage 2 runs only on the pieces stage 1 is unsure about (top harm score inside
`Cascade.escalate_from` .. `escalate_below`, and no rule fired): the embedding
head over full MiniLM sentence embeddings (ONNX, several ms) is fused with the
lexical head.
Confidently benign and confidently harmful texts never pay for the transformer.
For hate/harassment the packaged `alt-profanity-check` model is consulted when
the hate score is already suspicious. Long texts are scored sentence by sentence
so a request hidden deep in a long input is scored on its own; the score of a
category is its maximum over all normalised variants and pieces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from chatstack.safety.linear import LinearHead
from chatstack.safety.normalize import NormalizedText
from chatstack.safety.policy import CATEGORIES
from chatstack.safety.profanity import ProfanityScorer
from chatstack.safety.rules import matched_categories
from chatstack.safety.tfidf import FastTfidf

if TYPE_CHECKING:
    from chatstack.rag.embedder import OnnxEmbedder
    from chatstack.safety.static_embedder import StaticEmbedder

WHOLE_CHARS = 512  # up to here a user turn is one piece; longer: by sentence (generated text: always by sentence)
CHUNK_CHARS = 240
CHUNK_OVERLAP = 80  # a sentence longer than CHUNK_CHARS is cut into overlapping windows
STATIC_SCALE = 2.0  # static vectors (unit length) are scaled next to TF-IDF rows (unit length) in stage 1
EMBEDDING_WEIGHT = 0.6  # stage 2 = w * embedding head + (1 - w) * lexical head
PROFANITY_WEIGHT = 0.4  # hate score = max(hate, (1 - p) * hate + p * profanity)
_SENTENCE_END = re.compile(r"(?<=[.!?;:\n])\s*")
_WORD = re.compile(r"[a-z0-9]+")
PROFANITY_GATE = 0.15  # profanity is only consulted when the hate score is already above this


@dataclass
class SafetyHead:
    """The trained parts, saved together as one joblib artifact."""

    vectorizer: object  # sklearn TfidfVectorizer (char n-grams)
    fast: LinearHead  # stage 1: over [TF-IDF | STATIC_SCALE * static token embedding]
    lexical: LinearHead  # over TF-IDF alone, fused with the semantic head in stage 2
    semantic: LinearHead | None  # over MiniLM sentence embeddings; None: stage 1 only
    labels: tuple[str, ...]
    data_digest: str = ""


@dataclass(frozen=True)
class Cascade:
    """When stage 1 hands a text to the MiniLM stage: top harm score in [escalate_from, escalate_below).

    `escalate_from=0, escalate_below=1` (above every score) sends every text to stage 2.
    """

    escalate_from: float = 0.15
    escalate_below: float = 0.9

    def __post_init__(self):
        if not 0.0 <= self.escalate_from <= self.escalate_below <= 1.01:
            raise ValueError(f"cascade: need 0 <= escalate_from <= escalate_below <= 1.01, "
                             f"got {self.escalate_from} / {self.escalate_below}")

    def escalates(self, top_harm: float) -> bool:
        return self.escalate_from <= top_harm < self.escalate_below


@dataclass(frozen=True)
class CategoryScores:
    scores: dict[str, float]
    rule_hits: tuple[str, ...] = field(default=())
    escalated: bool = False  # stage 2 (full MiniLM) ran

    def top(self, categories: tuple[str, ...] = CATEGORIES) -> tuple[str, float]:
        name = max(categories, key=lambda c: self.scores.get(c, 0.0))
        return name, self.scores.get(name, 0.0)


def chunks(text: str, size: int = CHUNK_CHARS, overlap: int = CHUNK_OVERLAP) -> list[str]:
    """Overlapping windows of `size` characters; one window for short texts."""
    if len(text) <= size:
        return [text]
    step = size - overlap
    return [text[start:start + size] for start in range(0, len(text) - overlap, step)]


def pieces(text: str, whole_chars: int = WHOLE_CHARS) -> list[str]:
    """What gets scored: a text up to `whole_chars` whole; a longer one as sentences and sentence pairs.

    Scoring sentences on their own keeps one harmful sentence from being diluted
    by pages of harmless context; pairs catch a request split over two sentences.
    Repeated sentences are scored once.
    """
    if len(text) <= whole_chars:
        return [text] if has_content(text) else []
    sentences = [piece for sentence in _SENTENCE_END.split(text) if sentence.strip() for piece in chunks(sentence)]
    pairs = [f"{a} {b}" for a, b in zip(sentences, sentences[1:])]
    return [piece for piece in dict.fromkeys(sentences + pairs) if has_content(piece)]


def has_content(piece: str) -> bool:
    """Whether a piece holds a word other than a function word. Pieces of function words alone
    carry no meaning to score, yet the head gave a lone "The" (the start of a streamed sentence)
    0.96 for violence; such a piece is still scored inside its pair with the next sentence."""
    return any(word not in ENGLISH_STOP_WORDS for word in _WORD.findall(piece.lower()))


class SafetyClassifier:
    def __init__(self, head: SafetyHead, static: "StaticEmbedder", embedder: "OnnxEmbedder | None",
                 cascade: Cascade = Cascade()):
        self.head = head
        self.static = static
        self.embedder = embedder if head.semantic is not None else None
        self.cascade = cascade
        self.profanity = ProfanityScorer()
        self.tfidf = FastTfidf(head.vectorizer)
        self._columns = [head.labels.index(c) if c in head.labels else None for c in CATEGORIES]

    def fast_probabilities(self, texts: list[str], tfidf=None) -> np.ndarray:
        """(N, len(labels)) stage-1 probabilities."""
        tfidf = self.tfidf.transform(texts) if tfidf is None else tfidf
        return self.head.fast.probabilities(tfidf, STATIC_SCALE * self.static.embed(texts))

    def full_probabilities(self, texts: list[str], tfidf=None) -> np.ndarray:
        """(N, len(labels)) stage-2 probabilities: MiniLM head fused with the lexical head."""
        if self.embedder is None:
            raise ValueError("stage 2 needs the MiniLM embedder (safety.use_embeddings = true)")
        tfidf = self.tfidf.transform(texts) if tfidf is None else tfidf
        semantic = self.head.semantic.probabilities(self.embedder.embed(texts))
        return EMBEDDING_WEIGHT * semantic + (1 - EMBEDDING_WEIGHT) * self.head.lexical.probabilities(tfidf)

    def score(self, text: NormalizedText, whole_chars: int = WHOLE_CHARS,
              categories: tuple[str, ...] = CATEGORIES) -> CategoryScores:
        """Scores for every category; only `categories` (those the caller will act on) can send a
        piece to stage 2. `whole_chars=0` scores sentence by sentence (and pairs) however short
        the text: an output window mixes a harmless start with what may turn harmful."""
        scored = [piece for variant in text.all_texts for piece in pieces(variant, whole_chars)]
        hits = tuple(dict.fromkeys(hit for variant in text.all_texts for hit in matched_categories(variant)))
        if not scored:  # nothing but function words and punctuation
            return CategoryScores({c: 1.0 if c in hits else 0.0 for c in CATEGORIES}, hits, False)
        tfidf = self.tfidf.transform(scored)  # (N, vocabulary) sparse, shared by both stages
        probs = self.fast_probabilities(scored, tfidf)  # (N, len(labels))
        deciding = [self.head.labels.index(c) for c in categories if c in self.head.labels]
        unsure = [] if self.embedder is None or hits or not deciding else [
            row for row, top in enumerate(probs[:, deciding].max(axis=1)) if self.cascade.escalates(top)]
        if unsure:  # only the pieces stage 1 is unsure about pay for MiniLM
            probs[unsure] = self.full_probabilities([scored[row] for row in unsure], tfidf[unsure])
        escalated = bool(unsure)
        probs = probs.max(axis=0)  # (len(labels),)
        scores = {c: float(probs[i]) if i is not None else 0.0 for c, i in zip(CATEGORIES, self._columns)}
        for hit in hits:
            scores[hit] = 1.0
        hate = scores["hate_harassment"]
        if hate > PROFANITY_GATE:
            profane = self.profanity.max_probability(scored)
            scores["hate_harassment"] = max(hate, (1 - PROFANITY_WEIGHT) * hate + PROFANITY_WEIGHT * profane)
        return CategoryScores(scores, hits, escalated)
