"""The packaged `alt-profanity-check` model, evaluated without scikit-learn's per-call overhead.

The package ships a TF-IDF vectorizer and a `CalibratedClassifierCV` of linear
SVMs with sigmoid calibration; its `predict_prob` costs ~10 ms per call, almost
all of it input validation in the five calibrated estimators. `ProfanityScorer`
reads the same fitted weights once and computes the same probability:
mean over folds of sigmoid(-(a * (x·w + b) + c)).
"""

from __future__ import annotations

import numpy as np


class ProfanityScorer:
    def __init__(self):
        from profanity_check import profanity_check as packaged

        model = packaged.model
        if getattr(model, "method", None) != "sigmoid" or list(model.classes_) != [0, 1]:
            raise ValueError("alt-profanity-check: expected a binary sigmoid-calibrated model")
        folds = model.calibrated_classifiers_
        self.vectorizer = packaged.vectorizer
        self.weights = np.stack([np.ravel(f.estimator.coef_) for f in folds], axis=1)  # (features, folds)
        self.bias = np.array([float(np.ravel(f.estimator.intercept_)[0]) for f in folds])  # (folds,)
        self.slope = np.array([f.calibrators[0].a_ for f in folds])  # (folds,)
        self.offset = np.array([f.calibrators[0].b_ for f in folds])  # (folds,)

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """(N,) probability that each text is profane."""
        decision = np.asarray(self.vectorizer.transform(texts) @ self.weights) + self.bias  # (N, folds)
        return (1.0 / (1.0 + np.exp(self.slope * decision + self.offset))).mean(axis=1)

    def max_probability(self, texts: list[str]) -> float:
        return float(self.probabilities(texts).max()) if texts else 0.0
