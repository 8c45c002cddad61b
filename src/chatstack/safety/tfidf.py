"""A fitted scikit-learn `TfidfVectorizer`, applied without its per-call overhead.

`TfidfVectorizer.transform` spends most of a short request in input validation
and sparse-matrix bookkeeping (~1 ms for one sentence, several times the n-gram
counting itself). `FastTfidf` keeps the fitted analyzer, vocabulary and idf
weights and builds the same L2-normalised CSR rows directly (checked equal in
tests/unit/safety/test_safety_cascade.py).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import scipy.sparse


class FastTfidf:
    def __init__(self, vectorizer):
        if vectorizer.norm != "l2" or not vectorizer.use_idf:
            raise ValueError("FastTfidf supports norm='l2' with use_idf=True only")
        self.analyze = vectorizer.build_analyzer()
        self.vocabulary = vectorizer.vocabulary_
        self.idf = np.asarray(vectorizer.idf_, dtype=np.float64)
        self.sublinear_tf = vectorizer.sublinear_tf
        self.width = len(self.idf)

    def transform(self, texts: list[str]) -> scipy.sparse.csr_matrix:
        """(N, vocabulary) float64 CSR, L2-normalised rows."""
        indptr, indices, values = [0], [], []
        for text in texts:
            counts = Counter(j for j in map(self.vocabulary.get, self.analyze(text)) if j is not None)
            columns = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            if self.sublinear_tf:
                tf = np.log(tf) + 1.0
            weights = tf * self.idf[columns]
            norm = np.sqrt(weights @ weights)
            indices.append(columns)
            values.append(weights / norm if norm > 0 else weights)
            indptr.append(indptr[-1] + len(columns))
        data = np.concatenate(values) if values else np.zeros(0)
        cols = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64)
        matrix = scipy.sparse.csr_matrix((data, cols, np.array(indptr)), shape=(len(texts), self.width))
        matrix.sort_indices()
        return matrix
