"""Chunks and their vectors in Milvus: a Milvus Lite file by default, a server by URI.

Both go through `pymilvus.MilvusClient`, so the code path is the same. The collection
is created on first use with a FLAT index (exact search, best for small corpora) and
moved to HNSW once it holds `HNSW_FROM_ROWS` chunks. Every query is filtered by tenant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from chatstack.rag.chunking import Chunk

HNSW_FROM_ROWS = 50_000
MAX_TEXT_BYTES = 8192
_ITERATOR_BATCH = 1000


class StoreUnavailable(RuntimeError):
    """The vector store cannot be reached, or the collection does not exist."""


@dataclass(frozen=True)
class ScoredChunk:
    chunk_id: str
    source: str
    title: str
    section: str
    text: str
    score: float  # cosine similarity (vectors are unit length, metric IP)
    vector: tuple[float, ...] = field(default=(), compare=False, repr=False)  # the stored unit vector


@dataclass(frozen=True)
class StoredChunk:
    chunk_id: str
    source: str
    title: str
    section: str
    text: str


@dataclass(frozen=True)
class StoredChunkRef:
    chunk_id: str
    source: str


def index_type_for(row_count: int) -> str:
    return "HNSW" if row_count >= HNSW_FROM_ROWS else "FLAT"


def quoted(value: str) -> str:
    """A Milvus filter string literal (Milvus Lite has no filter templating)."""
    return json.dumps(value, ensure_ascii=False)


def is_lite(uri: str) -> bool:
    return not uri.startswith(("http://", "https://", "tcp://", "unix:"))


def connect(uri: str, must_exist: bool = False):
    """A MilvusClient for a Lite file path or a server URI; StoreUnavailable on failure."""
    from pymilvus import MilvusClient

    is_file = is_lite(uri)
    if is_file and must_exist and not Path(uri).exists():  # milvus-lite 3 keeps a folder at the path
        raise StoreUnavailable(f"Milvus Lite store {uri} does not exist")
    if is_file:
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    try:
        return MilvusClient(uri=uri)
    except Exception as exc:  # pymilvus raises several types for an unreachable store
        hint = " (a Milvus Lite store is open in one process at a time: is a server using it?)" if is_file else ""
        raise StoreUnavailable(f"cannot connect to Milvus at {uri}: {exc}{hint}") from exc


class VectorStore:
    def __init__(self, client, collection: str, uri: str):
        self.client = client
        self.collection = collection
        self.uri = uri

    @classmethod
    def open(cls, uri: str, collection: str, must_exist: bool = False) -> "VectorStore":
        store = cls(connect(uri, must_exist=must_exist), collection, uri)
        exists = store.exists()
        if must_exist and not exists:
            store.close()
            raise StoreUnavailable(f"collection {collection!r} does not exist in {uri}")
        if exists:
            store.client.load_collection(collection)  # a reopened collection starts released
        return store

    def exists(self) -> bool:
        return self.client.has_collection(self.collection)

    def create(self, dim: int) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        for name, length in (("tenant", 128), ("root", 1024), ("source", 1024), ("title", 512), ("section", 1024)):
            schema.add_field(name, DataType.VARCHAR, max_length=length)
        schema.add_field("position", DataType.INT64)
        schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
        self.client.create_collection(self.collection, schema=schema, index_params=self._index_params("FLAT"))

    def _index_params(self, index_type: str):
        params = self.client.prepare_index_params()
        extra = {"M": 16, "efConstruction": 200} if index_type == "HNSW" else {}
        params.add_index("vector", index_type=index_type, metric_type="IP", params=extra)
        return params

    def index_type(self) -> str:
        return self.client.describe_index(self.collection, "vector")["index_type"]

    def row_count(self) -> int:
        return int(self.client.get_collection_stats(self.collection)["row_count"])

    def ensure_index(self) -> str:
        """Rebuild the vector index if the collection outgrew (or shrank below) its type."""
        wanted = index_type_for(self.row_count())
        if self.index_type() != wanted:
            self.client.release_collection(self.collection)
            self.client.drop_index(self.collection, "vector")
            self.client.create_index(self.collection, self._index_params(wanted))
            self.client.load_collection(self.collection)
        return wanted

    def insert(self, chunks: list[Chunk], vectors: np.ndarray, root: str) -> None:
        rows = [
            {"id": c.chunk_id, "vector": v.tolist(), "tenant": c.tenant, "root": root, "source": c.source,
             "title": _fit(c.title, 512), "section": _fit(c.section, 1024), "position": c.position,
             "text": _fit(c.text, MAX_TEXT_BYTES)}
            for c, v in zip(chunks, vectors)
        ]
        if rows:
            self.client.insert(self.collection, rows)

    def flush(self) -> None:
        """Seal what was written: Milvus Lite searches unsealed rows by brute force (~4 s at 10k rows)."""
        self.client.flush(self.collection)

    def delete(self, chunk_ids: Iterable[str]) -> None:
        ids = list(chunk_ids)
        if ids:
            self.client.delete(self.collection, ids=ids)

    def refs(self, tenant: str, root: str | None = None) -> list[StoredChunkRef]:
        """Every stored chunk of `tenant` (optionally only those ingested from `root`)."""
        where = f"tenant == {quoted(tenant)}" + ("" if root is None else f" and root == {quoted(root)}")
        iterator = self.client.query_iterator(self.collection, batch_size=_ITERATOR_BATCH, filter=where,
                                              output_fields=["id", "source"])
        refs: list[StoredChunkRef] = []
        try:
            while batch := iterator.next():
                refs.extend(StoredChunkRef(row["id"], row["source"]) for row in batch)
        finally:
            iterator.close()
        return refs

    def tenant_chunks(self, tenant: str, limit: int) -> tuple[list[StoredChunk], np.ndarray] | None:
        """Every chunk of `tenant` with its vectors (N, dim), or None when it holds more than `limit`."""
        fields = ["id", "vector", "source", "title", "section", "text"]
        try:
            iterator = self.client.query_iterator(self.collection, batch_size=_ITERATOR_BATCH,
                                                  filter=f"tenant == {quoted(tenant)}", output_fields=fields)
            chunks, vectors = [], []
            try:
                while batch := iterator.next():
                    chunks += [StoredChunk(r["id"], r["source"], r["title"], r["section"], r["text"]) for r in batch]
                    vectors += [r["vector"] for r in batch]
                    if len(chunks) > limit:
                        return None
            finally:
                iterator.close()
        except Exception as exc:  # the store went away, or the collection was dropped
            raise StoreUnavailable(f"reading tenant {tenant!r} from {self.collection!r} failed: {exc}") from exc
        if not chunks:
            return [], np.zeros((0, 0), dtype=np.float32)
        return chunks, np.asarray(vectors, dtype=np.float32).reshape(len(chunks), -1)

    def search(self, vector: np.ndarray, tenant: str, top_k: int) -> list[ScoredChunk]:
        try:
            hits = self.client.search(self.collection, [vector.tolist()], limit=top_k,
                                      filter=f"tenant == {quoted(tenant)}", search_params={"metric_type": "IP"},
                                      output_fields=["source", "title", "section", "text", "vector"])[0]
        except Exception as exc:  # the store went away, or the collection was dropped
            raise StoreUnavailable(f"search in {self.collection!r} failed: {exc}") from exc
        return [ScoredChunk(h["id"], h["entity"]["source"], h["entity"]["title"], h["entity"]["section"],
                            h["entity"]["text"], float(h["distance"]), tuple(map(float, h["entity"]["vector"])))
                for h in hits]

    def close(self) -> None:
        """Close the connection; for Milvus Lite also stop this process's embedded server, releasing the file."""
        self.client.close()
        if is_lite(self.uri):
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(self.uri)


def _fit(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` of UTF-8, on a character boundary."""
    raw = text.encode("utf-8")
    return text if len(raw) <= max_bytes else raw[:max_bytes].decode("utf-8", errors="ignore")
