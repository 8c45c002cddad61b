"""Static token embeddings distilled from MiniLM: a sentence vector for ~0.1 ms.

The cheap first stage of moderation (see `safety.classifier`). Every vocabulary
token is passed through the ONNX MiniLM once, alone (`[CLS] token [SEP]`), and
its pooled output is kept as that token's vector (the model2vec idea). A text's
vector is then the mean of its tokens' vectors, L2-normalised: no transformer
at request time, but the vectors still carry what MiniLM learned about word
meaning, so a linear head over them generalises past the exact training words.
The table (vocab × 384, float16) is built once and cached next to the head, with the
digest of the ONNX file it came from: a replaced MiniLM makes it be distilled again.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from chatstack.rag.embedder import bundled_model_dir, load_tokenizer

if TYPE_CHECKING:
    from chatstack.rag.embedder import OnnxEmbedder

log = logging.getLogger(__name__)
CLS_ID, SEP_ID, UNK_ID = 101, 102, 100  # all-MiniLM-L6-v2 (BERT uncased) special tokens
DISTILL_BATCH = 1024
MAX_TOKENS = 256


def distill_table(session, vocab_size: int) -> np.ndarray:
    """(vocab_size, dim) float16: the pooled ONNX output for each token on its own."""
    rows = []
    for start in range(0, vocab_size, DISTILL_BATCH):
        ids = np.arange(start, min(vocab_size, start + DISTILL_BATCH), dtype=np.int64)
        batch = np.stack([np.full_like(ids, CLS_ID), ids, np.full_like(ids, SEP_ID)], axis=1)  # (B, 3)
        rows.append(session.run(None, {"input_ids": batch, "attention_mask": np.ones_like(batch)})[0])
    return np.concatenate(rows).astype(np.float16)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


def save_table(table_path: Path, table: np.ndarray, source: Path) -> None:
    """Write `table` with the digest of the `source` file it was distilled from (atomic rename)."""
    table_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = table_path.with_name(table_path.name + ".tmp.npz")
    np.savez(tmp, table=table, source_digest=np.array(file_digest(source)))
    tmp.replace(table_path)


def cached_table(table_path: Path, source: Path) -> np.ndarray | None:
    """The table at `table_path` if it was distilled from the current `source` file, else None."""
    if not table_path.is_file() or not Path(source).is_file():
        return None
    with np.load(table_path) as cached:
        if str(cached["source_digest"]) != file_digest(source):
            return None
        return cached["table"]


class StaticEmbedder:
    """Text → unit-length float32 vectors (N, dim) from a distilled token table."""

    def __init__(self, table: np.ndarray, tokenizer_dir: Path | None = None):
        if table.ndim != 2:
            raise ValueError(f"static embedding table must be (vocab, dim), got shape {table.shape}")
        self.table = table.astype(np.float32)
        self.dim = table.shape[1]
        self.tokenizer = load_tokenizer(tokenizer_dir or bundled_model_dir(), max_tokens=MAX_TOKENS)
        self.tokenizer.no_padding()

    @classmethod
    def load_or_distill(cls, table_path: Path, embedder: Callable[[], "OnnxEmbedder"],
                        source: Path) -> "StaticEmbedder":
        """The cached table at `table_path`, distilled from `embedder()` (the ONNX MiniLM at `source`)
        when missing or when it was distilled from a different `source` file."""
        table_path = Path(table_path)
        table = cached_table(table_path, source)
        if table is None:
            log.info("distilling static token embeddings from %s to %s", source, table_path)
            onnx = embedder()
            table = distill_table(onnx.session, onnx.tokenizer.get_vocab_size())
            save_table(table_path, table, source)
        return cls(table)

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for row, encoding in enumerate(self.tokenizer.encode_batch(texts)):
            ids = encoding.ids[1:-1] or [UNK_ID]  # without [CLS]/[SEP]: each token's vector already pooled them
            vector = self.table[ids].mean(axis=0)
            out[row] = vector / max(float(np.linalg.norm(vector)), 1e-12)
        return out
