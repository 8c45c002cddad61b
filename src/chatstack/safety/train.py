"""Train the safety head on data/safety/train.yaml and cache it as a joblib file.

`ensure_head` loads the cached artifact and retrains (well under a minute on
CPU) when it is missing or was trained on different data. Entry point:
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
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from chatstack.safety.classifier import SafetyHead
from chatstack.safety.dataset import TRAIN_PATH, Example, load_examples
from chatstack.rag.embedder import OnnxEmbedder
from chatstack.safety.embedder import load_embedder
from chatstack.safety.normalize import canonicalize

log = logging.getLogger(__name__)
HEAD_FORMAT = 2  # bump when SafetyHead or the features change


def data_digest(train_path: Path, lexical_only: bool) -> str:
    text = Path(train_path).read_bytes() + f"|format={HEAD_FORMAT}|lexical_only={lexical_only}".encode()
    return hashlib.sha256(text).hexdigest()[:16]


def train_head(examples: list[Example], embedder: OnnxEmbedder | None, digest: str = "") -> SafetyHead:
    texts = [canonicalize(e.text) for e in examples]
    labels = np.array([e.label for e in examples])
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2,
                                 max_features=60000)
    lexical = LogisticRegression(C=8.0, max_iter=2000, class_weight="balanced")
    lexical.fit(vectorizer.fit_transform(texts), labels)
    semantic = None
    if embedder is not None:
        semantic = LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced")
        semantic.fit(embedder.embed(texts, batch_size=64), labels)
    return SafetyHead(vectorizer, lexical, semantic, tuple(lexical.classes_), digest)


def embedder_path(head_path: Path) -> Path:
    """The ONNX MiniLM lives next to the head it was trained with."""
    return Path(head_path).with_name("safety-embedder.onnx")


def save_head(head: SafetyHead, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    joblib.dump(head, tmp)
    tmp.replace(path)


def ensure_head(path: Path, embedder: OnnxEmbedder | None, train_path: Path = TRAIN_PATH) -> SafetyHead:
    """The cached head at `path`, trained first when missing or stale."""
    digest = data_digest(train_path, embedder is None)
    if path.exists():
        head = joblib.load(path)
        if isinstance(head, SafetyHead) and head.data_digest == digest:
            return head
    started = time.perf_counter()
    head = train_head(load_examples(train_path), embedder, digest)
    save_head(head, path)
    log.info("trained safety head in %.1f s → %s", time.perf_counter() - started, path)
    return head


def main(out: Path, lexical_only: bool) -> int:
    path = Path(out)
    if path.exists():
        path.unlink()
    ensure_head(path, None if lexical_only else load_embedder(embedder_path(path), threads=0))
    print(f"safety head ready: {path}")
    return 0


if __name__ == "__main__":
    from chatstack.project import ARTIFACTS

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(ARTIFACTS / "safety-head.joblib"))
    parser.add_argument("--lexical-only", action="store_true", help="skip the embedding head")
    arguments = parser.parse_args()
    raise SystemExit(main(Path(arguments.out), arguments.lexical_only))
