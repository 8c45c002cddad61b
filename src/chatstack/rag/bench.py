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
from typing import Callable

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
    load_s: float  # reading the tenant's chunks from the store into the in-process copy
    bm25_s: float  # building BM25 over them
    timings_ms: dict[str, list[float]]  # step → one time per query, all steps timed on the same queries

    def table(self) -> str:
        def row(name: str, values: list[float]) -> str:
            ordered = sorted(values)
            p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
            return f"{name:<40} {statistics.median(values):7.2f} {p95:7.2f}"

        queries = len(next(iter(self.timings_ms.values())))
        return "\n".join([f"chunks: {self.chunks}, Milvus index: {self.index_type}, queries: {queries}, "
                          f"in-process copy loaded in {self.load_s:.1f} s, BM25 built in {self.bm25_s:.1f} s",
                          f"{'step':<40} {'p50 ms':>7} {'p95 ms':>7}",
                          *(row(name, values) for name, values in self.timings_ms.items())])


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
                          reuse: bool = False, threads: tuple[int, ...] = (1, 0)) -> LatencyReport:
    """Time every retrieval path on the same queries, interleaved, so machine load hits all alike.

    `embedder` embeds the synthetic corpus; query embedders run with each of `threads`
    intra-op thread counts (0: onnxruntime's default, one per core); the first is used
    by the retrieve totals.
    """
    from chatstack.rag.embedder import OnnxEmbedder
    from chatstack.rag.memory_index import TenantIndexes
    from chatstack.rag.service import MilvusRetriever

    store = build_store(embedder, db_path, chunks, reuse)
    index_type = store.ensure_index()
    query_embedders = {n: OnnxEmbedder(embedder.onnx_path, embedder.tokenizer_dir, threads=n) for n in threads}
    fast = query_embedders[threads[0]]
    shared = TenantIndexes(store, max_chunks=chunks, refresh_s=None)
    t0 = time.perf_counter()
    index = shared.get("bench")
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index.bm25  # built on the first hybrid query in serving
    bm25_s = time.perf_counter() - t0
    retrievers = {mode: MilvusRetriever(store, fast, "bench", -1.0, mode, memory_max_chunks=chunks)
                  for mode in ("dense", "hybrid")}
    for retriever in retrievers.values():
        retriever.indexes = shared
    in_milvus = MilvusRetriever(store, fast, "bench", -1.0, "dense", memory_max_chunks=0)
    vectors = {q: fast.embed_one(q) for q in QUERIES}
    steps: dict[str, Callable[[str], object]] = {
        **{f"embed query ({n or 'default'} threads)": e.embed_one for n, e in query_embedders.items()},
        f"search top-{top_k}, Milvus Lite": lambda q: store.search(vectors[q], "bench", top_k),
        f"search top-{top_k}, in-process dense": lambda q: index.search(vectors[q], q, top_k, hybrid=False),
        f"search top-{top_k}, in-process hybrid": lambda q: index.search(vectors[q], q, top_k, hybrid=True),
        "retrieve total, dense, Milvus Lite": lambda q: in_milvus.search(q, top_k),
        "retrieve total, dense, in-process": lambda q: retrievers["dense"].search(q, top_k),
        "retrieve total, hybrid, in-process": lambda q: retrievers["hybrid"].search(q, top_k),
    }
    timings: dict[str, list[float]] = {name: [] for name in steps}
    for n in range(queries + 10):
        query = QUERIES[n % len(QUERIES)]
        for name, step in steps.items():
            start = time.perf_counter()
            step(query)
            if n >= 10:  # warm-up
                timings[name].append((time.perf_counter() - start) * 1e3)
    store.close()
    return LatencyReport(chunks, index_type, load_s, bm25_s, timings)


@dataclass(frozen=True)
class GroundingCost:
    answers: int
    per_answer_ms: list[float]  # passage sentences embedded for each answer
    stored_ms: list[float]  # passage sentences read from the ingest-time file
    max_score_difference: float

    def table(self) -> str:
        def row(name: str, values: list[float]) -> str:
            ordered = sorted(values)
            return f"{name:<48} {statistics.median(values):7.1f} {ordered[int(0.9 * (len(ordered) - 1))]:7.1f} {ordered[-1]:7.1f}"

        return "\n".join([f"grounding check, {self.answers} answers against 3 random chunks each (nothing cached between them)",
                          f"{'passage sentences':<48} {'p50 ms':>7} {'p90 ms':>7} {'max ms':>7}",
                          row("embedded per answer", self.per_answer_ms),
                          row("read from the sentence-vector file", self.stored_ms),
                          f"largest difference in answer score: {self.max_score_difference:.1e}"])


def run_grounding_benchmark(store: VectorStore, tenant: str, embedder, sentences, answers: int = 20,
                            seed: int = 0) -> GroundingCost:
    """Time `check_grounding` on answers over passages not seen before, with and without `sentences`.

    Each answer is two sentences of one of three chunks drawn at random plus one invented
    sentence; each path gets a fresh `CachedEmbedder`, so neither reuses the other's vectors.
    """
    from chatstack.rag.embedder import CachedEmbedder
    from chatstack.rag.grounding import check_grounding, split_sentences
    from chatstack.rag.retriever import Passage

    loaded = store.tenant_chunks(tenant, 10**7)
    if not loaded or not loaded[0]:
        raise ValueError(f"tenant {tenant!r} holds no chunks: ingest first")
    chunks, vectors = loaded
    rng = random.Random(seed)
    embedder.embed(["warm-up"])
    per_answer, stored, differences = [], [], []
    for _ in range(answers):
        picks = rng.sample(range(len(chunks)), min(3, len(chunks)))
        passages = [Passage(chunks[i].text, chunks[i].source, 0.5, vector=tuple(map(float, vectors[i]))) for i in picks]
        answer = " ".join(split_sentences(chunks[picks[0]].text)[:2]) + " It returns a new list of the items."
        scores = []
        for times, backing in ((per_answer, None), (stored, sentences)):
            start = time.perf_counter()
            scores.append(check_grounding(answer, passages, CachedEmbedder(embedder, store=backing)).score)
            times.append((time.perf_counter() - start) * 1e3)
        differences.append(abs(scores[0] - scores[1]))
    return GroundingCost(answers, per_answer, stored, max(differences))
