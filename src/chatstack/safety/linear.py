"""A trained linear classifier as plain arrays: probabilities with one matmul.

scikit-learn's `predict_proba` validates its input on every call (~0.3 ms per
call, more than the arithmetic); inside the moderation hot path the weights are
applied directly. `LinearHead.from_sklearn` converts a fitted multinomial
`LogisticRegression`; the result matches its `predict_proba`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LinearHead:
    weights: np.ndarray  # (features, classes) float32
    bias: np.ndarray  # (classes,) float32
    labels: tuple[str, ...]

    def __post_init__(self):
        if self.weights.ndim != 2 or self.weights.shape[1] != len(self.labels) or self.bias.shape != (len(self.labels),):
            raise ValueError(f"LinearHead: weights {self.weights.shape} / bias {self.bias.shape} do not match "
                             f"{len(self.labels)} labels")

    @classmethod
    def from_sklearn(cls, model) -> "LinearHead":
        """A fitted multi-class LogisticRegression (softmax over `classes_`)."""
        coef = np.asarray(model.coef_, dtype=np.float32)  # (classes, features)
        if coef.shape[0] != len(model.classes_):
            raise ValueError(f"expected a multinomial model with one row per class, got coef {coef.shape}")
        return cls(np.ascontiguousarray(coef.T), np.asarray(model.intercept_, dtype=np.float32),
                   tuple(str(label) for label in model.classes_))

    def probabilities(self, *blocks) -> np.ndarray:
        """(N, classes) softmax probabilities.

        `blocks` are the feature matrices, each (N, width_i), dense or scipy sparse, in the
        column order the head was trained on (widths sum to the head's features): a sparse
        TF-IDF block and a dense embedding block need not be stacked first.
        """
        widths = [block.shape[1] for block in blocks]
        if sum(widths) != self.weights.shape[0]:
            raise ValueError(f"LinearHead: feature widths {widths} do not sum to {self.weights.shape[0]}")
        logits = np.tile(self.bias, (blocks[0].shape[0], 1))  # (N, classes)
        start = 0
        for block, width in zip(blocks, widths):
            logits += np.asarray(block @ self.weights[start:start + width], dtype=np.float32)
            start += width
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        return logits / logits.sum(axis=1, keepdims=True)
