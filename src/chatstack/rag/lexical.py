"""BM25 over chunk texts: the lexical half of hybrid retrieval.

Dense MiniLM vectors miss questions whose key word is rare or literal (a keyword, an
option name, an error text); BM25 finds them by the words themselves. Terms are the
grounding check's stemmed content words, so both agree on what a "word" is. The index
is a sparse (chunks × terms) matrix of precomputed BM25 weights: a query is a sum of a
few columns.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from chatstack.rag.grounding import word_terms

# a word found only in the earlier turns of a follow-up: it names the topic, the turn's own words say what is asked
CONTEXT_TERM_WEIGHT = 0.3


@dataclass(frozen=True)
class BM25Params:
    k1: float = 1.2  # term-frequency saturation
    b: float = 0.75  # length normalisation

    def __post_init__(self) -> None:
        if not 0.0 <= self.k1 <= 10.0:
            raise ValueError(f"bm25 k1 must be in [0, 10], got {self.k1}")
        if not 0.0 <= self.b <= 1.0:
            raise ValueError(f"bm25 b must be in [0, 1], got {self.b}")


class BM25Index:
    """Okapi BM25 (Lucene's non-negative idf) over a fixed list of texts."""

    def __init__(self, texts: list[str], params: BM25Params = BM25Params()):
        self.size = len(texts)
        counts = [Counter(word_terms(t)) for t in texts]
        self.vocabulary: dict[str, int] = {}
        rows, cols, tfs = [], [], []
        for row, counter in enumerate(counts):
            for term, tf in counter.items():
                rows.append(row)
                cols.append(self.vocabulary.setdefault(term, len(self.vocabulary)))
                tfs.append(tf)
        rows_a, cols_a, tf_a = np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64), np.array(tfs, float)
        lengths = np.array([sum(c.values()) for c in counts], dtype=float)  # (N,)
        average = float(lengths.mean()) if self.size and lengths.sum() else 1.0
        df = np.bincount(cols_a, minlength=len(self.vocabulary)).astype(float)  # (V,)
        idf = np.log1p((self.size - df + 0.5) / (df + 0.5))  # (V,)
        norm = params.k1 * (1 - params.b + params.b * lengths[rows_a] / average) if len(rows_a) else tf_a
        weights = idf[cols_a] * tf_a * (params.k1 + 1) / (tf_a + norm)
        # (N, V), column-compressed: a query reads only its terms' columns
        self.weights = sparse.csc_matrix((weights, (rows_a, cols_a)), shape=(self.size, len(self.vocabulary)))

    def scores(self, query: str, context: tuple[str, ...] = (), context_weight: float = CONTEXT_TERM_WEIGHT) -> np.ndarray:
        """(N,) BM25 score of every text: each distinct term of `query` counts 1, one only in `context` less."""
        weights = {t: context_weight for text in context for t in word_terms(text)}
        weights.update({t: 1.0 for t in word_terms(query)})
        columns = {self.vocabulary[t]: w for t, w in weights.items() if t in self.vocabulary}
        if not columns:
            return np.zeros(self.size)
        return self.weights[:, list(columns)] @ np.fromiter(columns.values(), float)

    def top(self, query: str, k: int, context: tuple[str, ...] = (), context_weight: float = CONTEXT_TERM_WEIGHT) -> list[int]:
        """Rows of the best `k` texts with a positive score, best first."""
        scores = self.scores(query, context, context_weight)
        return [int(i) for i in top_rows(scores, k) if scores[i] > 0]


def top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` largest scores, best first (ties: lower index first)."""
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    candidates = np.argpartition(-scores, k - 1)[:k]
    return candidates[np.lexsort((candidates, -scores[candidates]))]


def reciprocal_rank_fusion(rankings: list[list[int]], k: int = 60) -> list[int]:
    """Items of several best-first rankings, ordered by Σ 1 / (k + rank) (Cormack et al., 2009)."""
    if k < 1:
        raise ValueError(f"rrf k must be >= 1, got {k}")
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(fused, key=lambda item: (-fused[item], item))

