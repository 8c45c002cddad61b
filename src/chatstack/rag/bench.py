"""Retrieval latency benchmark: embed a query + top-k search at N chunks in Milvus Lite.

The corpus is synthetic: real demo-corpus chunks, repeated with word-level perturbations
until there are N distinct chunks, so the vectors spread like real text does.
"""

from __future__ import annotations

import random
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from chatstack.rag.chunking import Chunk, ChunkingParams, chunk_document, chunk_id
from chatstack.rag.demo_corpus import write_python_topics
from chatstack.rag.documents import read_document
from chatstack.rag.store import VectorStore

QUERIES = ["How do I write a list comprehension?", "What does the with statement do?",
           "How are exceptions raised and caught?", "What is a generator expression?",
           "How do I format strings with f-strings?", "What are the dictionary methods?",
           "How does the Triton ensemble call the retrieve step?", "What does yield do in a function?"]


@dataclass(frozen=True)
class LatencyReport:
    chunks: int
    index_type: str
    embed_ms: list[float]
    search_ms: list[float]
    total_ms: list[float]

    def table(self) -> str:
        def row(name: str, values: list[float]) -> str:
            ordered = sorted(values)
            p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
            return f"{name:<16} {statistics.median(values):7.2f} {p95:7.2f}"

        return "\n".join([f"chunks: {self.chunks}, index: {self.index_type}, queries: {len(self.total_ms)}",
                          f"{'step':<16} {'p50 ms':>7} {'p95 ms':>7}", row("embed query", self.embed_ms),
                          row("search top-5", self.search_ms), row("retrieve total", self.total_ms)])


def synthetic_chunks(count: int, seed: int = 0) -> list[Chunk]:
    """`count` distinct chunks: Python topic chunks, then perturbed copies (words dropped and swapped)."""
    from chatstack.rag.embedder import token_offsets

    offsets = token_offsets()
    base: list[Chunk] = []
    for path in sorted(write_python_topics().glob("*.txt")):
        base += chunk_document(read_document(path, path.name), offsets, ChunkingParams(), "bench")
    rng = random.Random(seed)
    chunks = base[:count]
    while len(chunks) < count:
        original = base[len(chunks) % len(base)]
        words = original.text.split()
        kept = [w for w in words if rng.random() > 0.15]
        i, j = rng.randrange(len(kept)), rng.randrange(len(kept))
        kept[i], kept[j] = kept[j], kept[i]
        text = " ".join(kept)
        chunks.append(Chunk(chunk_id("bench", original.source, len(chunks), original.section, text), "bench",
                            original.source, original.title, original.section, len(chunks), text))
    return chunks


def build_store(embedder, db_path: Path, chunks: int, reuse: bool) -> VectorStore:
    """A sealed collection of `chunks` synthetic chunks; `reuse` keeps one built before (embedding 10k chunks takes minutes)."""
    db_path = Path(db_path)
    if not reuse:
        if db_path.is_dir():
            shutil.rmtree(db_path)
        db_path.unlink(missing_ok=True)
    store = VectorStore.open(str(db_path), "bench")
    if store.exists() and store.row_count() == chunks:
        store.flush()
        return store
    if store.exists():
        store.client.drop_collection("bench")
    store.create(embedder.dim)
    corpus = synthetic_chunks(chunks)
    for start in range(0, len(corpus), 512):
        batch = corpus[start:start + 512]
        store.insert(batch, embedder.embed([c.embedding_text for c in batch], batch_size=64), root="bench")
    store.flush()
    return store


def run_latency_benchmark(embedder, db_path: Path, chunks: int, queries: int, top_k: int = 5,
                          reuse: bool = False) -> LatencyReport:
    store = build_store(embedder, db_path, chunks, reuse)
    index_type = store.ensure_index()
    embed_ms, search_ms, total_ms = [], [], []
    for n in range(queries + 10):
        t0 = time.perf_counter()
        vector = embedder.embed_one(QUERIES[n % len(QUERIES)])
        t1 = time.perf_counter()
        store.search(vector, "bench", top_k)
        t2 = time.perf_counter()
        if n >= 10:  # warm-up
            embed_ms.append((t1 - t0) * 1e3)
            search_ms.append((t2 - t1) * 1e3)
            total_ms.append((t2 - t0) * 1e3)
    store.close()
    return LatencyReport(chunks, index_type, embed_ms, search_ms, total_ms)
