"""Train the safety head on data/safety/train.yaml and cache it as a joblib file.

Three linear heads share the labels: fast (char n-gram TF-IDF side by side
with distilled MiniLM token vectors: stage 1), lexical (TF-IDF alone) and
semantic (MiniLM sentence embeddings, optional; the two fuse in stage 2). `ensure_head` loads the cached artifact and retrains (about a minute
on CPU) when it is missing or was trained on different data or features. Entry point:
`python -m chatstack.safety.train [--out PATH] [--lexical-only]`.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import time
from pathlib import Path

import joblib
import numpy as np
import scipy.sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from chatstack.rag.embedder import OnnxEmbedder
from chatstack.safety.classifier import STATIC_SCALE, SafetyHead
from chatstack.safety.dataset import TRAIN_PATH, Example, load_examples
from chatstack.safety.embedder import load_embedder
from chatstack.safety.linear import LinearHead
from chatstack.safety.normalize import canonicalize
from chatstack.safety.static_embedder import StaticEmbedder

log = logging.getLogger(__name__)
HEAD_FORMAT = 3  # bump when SafetyHead or the features change (3: two-stage cascade, LinearHead arrays)


def data_digest(train_path: Path, lexical_only: bool) -> str:
    text = Path(train_path).read_bytes() + f"|format={HEAD_FORMAT}|lexical_only={lexical_only}".encode()
    return hashlib.sha256(text).hexdigest()[:16]


def _fit(features, labels: np.ndarray, c: float) -> LinearHead:
    """Multinomial logistic regression, classes balanced, as plain arrays."""
    return LinearHead.from_sklearn(LogisticRegression(C=c, max_iter=3000, class_weight="balanced").fit(features, labels))


def train_head(examples: list[Example], static: StaticEmbedder, embedder: OnnxEmbedder | None,
               digest: str = "") -> SafetyHead:
    texts = [canonicalize(e.text) for e in examples]
    labels = np.array([e.label for e in examples])
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2,
                                 max_features=60000)
    tfidf = vectorizer.fit_transform(texts)  # (N, vocabulary) sparse
    fast = _fit(scipy.sparse.hstack([tfidf, STATIC_SCALE * static.embed(texts)]).tocsr(), labels, 32.0)
    lexical = _fit(tfidf, labels, 8.0)
    semantic = _fit(embedder.embed(texts, batch_size=64), labels, 4.0) if embedder is not None else None
    if not fast.labels == lexical.labels == (semantic.labels if semantic else lexical.labels):
        raise ValueError("safety heads disagree on the label order")
    return SafetyHead(vectorizer, fast, lexical, semantic, lexical.labels, digest)


def embedder_path(head_path: Path) -> Path:
    """The ONNX MiniLM lives next to the head it was trained with."""
    return Path(head_path).with_name("safety-embedder.onnx")


def static_table_path(head_path: Path) -> Path:
    """The static token table distilled from that MiniLM, next to it."""
    return Path(head_path).with_name("safety-static.npz")


def save_head(head: SafetyHead, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    joblib.dump(head, tmp)
    tmp.replace(path)


def ensure_head(path: Path, static: StaticEmbedder, embedder: OnnxEmbedder | None,
                train_path: Path = TRAIN_PATH) -> SafetyHead:
    """The cached head at `path`, trained first when missing or stale."""
    digest = data_digest(train_path, embedder is None)
    if path.exists():
        head = joblib.load(path)
        if isinstance(head, SafetyHead) and head.data_digest == digest:
            return head
    started = time.perf_counter()
    head = train_head(load_examples(train_path), static, embedder, digest)
    save_head(head, path)
    log.info("trained safety head in %.1f s → %s", time.perf_counter() - started, path)
    return head


def main(out: Path, lexical_only: bool) -> int:
    path = Path(out)
    if path.exists():
        path.unlink()
    embedder = load_embedder(embedder_path(path), threads=0)
    static = StaticEmbedder.load_or_distill(static_table_path(path), lambda: embedder, embedder_path(path))
    ensure_head(path, static, None if lexical_only else embedder)
    print(f"safety head ready: {path}")
    return 0


if __name__ == "__main__":
    from chatstack.project import ARTIFACTS

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(ARTIFACTS / "safety-head.joblib"))
    parser.add_argument("--lexical-only", action="store_true", help="skip the MiniLM sentence-embedding head (stage 2)")
    arguments = parser.parse_args()
    raise SystemExit(main(Path(arguments.out), arguments.lexical_only))
