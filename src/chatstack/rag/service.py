"""What the `retrieve` step runs: query → passages, and never an error for a store fault.

`MilvusRetriever` is the plain `Retriever` (it raises `StoreUnavailable`);
`RetrievalService` wraps it for serving: it connects lazily, answers DEGRADED with no
passages while the store or collection is missing, and retries the connection at most
every `retry_after_s` seconds so a dead store does not slow every request down.
"""

from __future__ import annotations

import enum
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from chatstack.config import RetrievalSection
from chatstack.rag.memory_index import TenantIndexes
from chatstack.rag.query import query_vector
from chatstack.rag.retriever import Passage, Retriever
from chatstack.rag.store import StoreUnavailable, VectorStore, is_lite

log = logging.getLogger(__name__)


MEMORY_REFRESH_S = 60.0  # a Milvus server's chunks may change under a running deployment
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}")


def validate_tenant(tenant: str) -> str:
    """A tenant name: 1–128 characters, letters, digits and `_ . : @ -`, starting with a letter or digit."""
    if not isinstance(tenant, str) or _TENANT.fullmatch(tenant) is None:
        raise ValueError(f"tenant must be 1-128 characters of letters, digits and _ . : @ - "
                         f"(starting with a letter or digit), got {tenant!r}")
    return tenant


class RetrievalStatus(str, enum.Enum):
    OK = "ok"
    DISABLED = "disabled"
    DEGRADED = "degraded"  # the store or collection is unavailable: answered without passages


@dataclass(frozen=True)
class RetrievalResult:
    passages: list[Passage]
    status: RetrievalStatus
    detail: str = ""


class MilvusRetriever(Retriever):
    """Top-k passages of one tenant above a cosine threshold, dense or hybrid (dense + BM25, RRF).

    Tenants of up to `memory_max_chunks` chunks are searched in an in-process copy
    (`TenantIndexes`); bigger ones are searched by Milvus, dense only.
    """

    def __init__(self, store: VectorStore, embedder, tenant: str, score_threshold: float, mode: str = "dense",
                 memory_max_chunks: int = 0, refresh_s: float | None = None):
        if mode not in ("dense", "hybrid"):
            raise ValueError(f"retrieval mode must be 'dense' or 'hybrid', got {mode!r}")
        self.store = store
        self.embedder = embedder
        self.tenant = tenant
        self.score_threshold = score_threshold
        self.hybrid = mode == "hybrid"
        self.indexes = TenantIndexes(store, memory_max_chunks, refresh_s)
        self._warned_dense_only: set[str] = set()

    def search(self, query: str, top_k: int, tenant: str | None = None, context: tuple[str, ...] = ()) -> list[Passage]:
        """`context`: earlier user turns a follow-up `query` is searched with (`chatstack.rag.query`)."""
        tenant = self.tenant if tenant is None else tenant
        vector = query_vector(self.embedder, query, context)
        index = self.indexes.get(tenant)
        if index is not None:
            hits = index.search(vector, query, top_k, self.hybrid, context)
        else:
            if self.hybrid and tenant not in self._warned_dense_only:
                self._warned_dense_only.add(tenant)
                log.warning("tenant %r is over the in-memory cap: searched dense only, in Milvus", tenant)
            hits = self.store.search(vector, tenant, top_k)
        return [Passage(h.text, h.source, h.score, section=h.section, chunk_id=h.chunk_id, title=h.title, vector=h.vector)
                for h in hits if h.score >= self.score_threshold]


def within_budget(passages: list[Passage], count_tokens, max_tokens: int) -> list[Passage]:
    """The best passages whose texts fit in `max_tokens` together (best first, no gaps)."""
    kept, used = [], 0
    for passage in passages:
        used += count_tokens(passage.text)
        if used > max_tokens:
            break
        kept.append(passage)
    return kept


class RetrievalService:
    def __init__(self, cfg: RetrievalSection, retry_after_s: float = 10.0):
        self.cfg = cfg
        self.retry_after_s = retry_after_s
        self._retriever: MilvusRetriever | None = None
        self._failed_at: float | None = None
        self._failure = ""
        self._count_tokens = None
        self._embedder_instance = None

    def retrieve(self, query: str, tenant: str | None = None, context: tuple[str, ...] = ()) -> RetrievalResult:
        """Passages for `query` (with earlier turns as `context`) from `tenant`'s documents (None: the configured one)."""
        if tenant is not None:
            validate_tenant(tenant)
        if not self.cfg.enabled:
            return RetrievalResult([], RetrievalStatus.DISABLED)
        try:
            retriever = self._connected()
            passages = retriever.search(query, self.cfg.top_k, tenant, context)
        except StoreUnavailable as exc:
            self._disconnect(str(exc))
            return RetrievalResult([], RetrievalStatus.DEGRADED, str(exc))
        passages = within_budget(passages, self._count_tokens, self.cfg.max_context_tokens)
        return RetrievalResult(passages, RetrievalStatus.OK)

    def warm_up(self) -> None:
        """Connect and load the configured tenant now, so the first request does not pay for it."""
        if not self.cfg.enabled:
            return
        try:
            self._connected().indexes.get(self.cfg.tenant)
        except StoreUnavailable as exc:
            self._disconnect(str(exc))

    def _connected(self) -> MilvusRetriever:
        if self._retriever is not None:
            return self._retriever
        if self._failed_at is not None and time.monotonic() - self._failed_at < self.retry_after_s:
            raise StoreUnavailable(self._failure)
        try:
            embedder = self._embedder()
            store = VectorStore.open(self.cfg.milvus_uri, self.cfg.collection, must_exist=True)
        except (StoreUnavailable, ValueError, OSError) as exc:
            self._failed_at, self._failure = time.monotonic(), str(exc)
            raise StoreUnavailable(str(exc)) from exc
        self._retriever = MilvusRetriever(store, embedder, self.cfg.tenant, self.cfg.score_threshold, self.cfg.mode,
                                          self.cfg.memory_index_max_chunks,
                                          refresh_s=None if is_lite(self.cfg.milvus_uri) else MEMORY_REFRESH_S)
        self._failed_at = None
        return self._retriever

    def _embedder(self):
        from chatstack.rag.embedder import OnnxEmbedder, token_offsets

        if self._embedder_instance is not None:
            return self._embedder_instance
        tokenizer_dir = None if self.cfg.embedder_tokenizer_dir is None else Path(self.cfg.embedder_tokenizer_dir)
        offsets = token_offsets(tokenizer_dir)
        self._count_tokens = lambda text: len(offsets(text))
        self._embedder_instance = OnnxEmbedder(Path(self.cfg.embedder_onnx), tokenizer_dir,
                                                threads=self.cfg.embedder_threads)
        return self._embedder_instance

    def _disconnect(self, reason: str) -> None:
        if self._retriever is not None:
            log.warning("retrieval degraded: %s", reason)
            try:
                self._retriever.store.close()
            except Exception:  # closing a dead connection may fail too
                pass
        self._retriever = None
        if self._failed_at is None:
            self._failed_at, self._failure = time.monotonic(), reason

    def close(self) -> None:
        self._disconnect("closed")
