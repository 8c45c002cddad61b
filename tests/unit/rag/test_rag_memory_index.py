"""The in-process tenant copy against real Milvus Lite: same hits as Milvus, isolation, cap, reload."""

import dataclasses

import numpy as np
import pytest

from chatstack.rag.chunking import ChunkingParams
from chatstack.rag.ingest import Ingestor, discover
from chatstack.rag.memory_index import TenantIndex, TenantIndexes
from chatstack.rag.service import MilvusRetriever, RetrievalService, RetrievalStatus
from chatstack.rag.store import StoredChunk, VectorStore
from tests.unit.rag.test_rag_service import section

TOPICS = {
    "sets.md": "# Sets\n\nA set holds unique items. Adding an item twice keeps one copy.\n",
    "tuples.md": "# Tuples\n\nA tuple is an immutable sequence. Its items cannot be reassigned.\n",
    "dicts.md": "# Dicts\n\nA dict maps keys to values; keys must be hashable.\n",
    "global.md": "# The global statement\n\nThe global statement makes listed identifiers refer to module names.\n",
}


@pytest.fixture
def store(tmp_path, embedder, offsets):
    for tenant, names in (("a", ["sets.md", "tuples.md", "global.md"]), ("b", ["dicts.md"])):
        root = tmp_path / tenant
        root.mkdir()
        for name in names:
            (root / name).write_text(TOPICS[name])
        store = VectorStore.open(str(tmp_path / "rag.db"), "docs")
        Ingestor(store, embedder, offsets, ChunkingParams(64, 8), tenant=tenant).ingest([discover(root)])
        store.close()
    opened = VectorStore.open(str(tmp_path / "rag.db"), "docs")
    yield opened
    opened.close()


def test_in_memory_dense_search_matches_milvus(store, embedder):
    in_memory = MilvusRetriever(store, embedder, "a", -1.0, "dense", memory_max_chunks=100)
    in_milvus = MilvusRetriever(store, embedder, "a", -1.0, "dense", memory_max_chunks=0)
    for query in ("Can a tuple change?", "unique items", "module-level names"):
        got, expected = in_memory.search(query, 3), in_milvus.search(query, 3)
        assert [p.chunk_id for p in got] == [p.chunk_id for p in expected]
        assert [p.score for p in got] == pytest.approx([p.score for p in expected], abs=1e-5)
        for a, b in zip(got, expected):  # both paths hand the stored vector on, for the grounding check
            assert len(a.vector) == embedder.dim and a.vector == pytest.approx(b.vector, abs=1e-6)


def test_each_tenant_copy_holds_only_its_own_chunks(store, embedder):
    retriever = MilvusRetriever(store, embedder, "a", -1.0, "hybrid", memory_max_chunks=100)
    assert {p.source for p in retriever.search("keys", 10)} == {"a/sets.md", "a/tuples.md", "a/global.md"}
    assert {p.source for p in retriever.search("keys", 10, tenant="b")} == {"b/dicts.md"}
    assert retriever.search("keys", 10, tenant="nobody") == []


def test_tenant_over_the_cap_is_searched_in_milvus(store, embedder):
    indexes = TenantIndexes(store, max_chunks=2, refresh_s=None)
    assert indexes.get("a") is None and len(indexes.get("b")) == 1
    retriever = MilvusRetriever(store, embedder, "a", -1.0, "hybrid", memory_max_chunks=2)
    assert retriever.search("Can a tuple change?", 1)[0].source == "a/tuples.md"


def test_copy_is_reloaded_after_refresh_s(store):
    now = [0.0]
    indexes = TenantIndexes(store, max_chunks=100, refresh_s=60.0, clock=lambda: now[0])
    first = indexes.get("a")
    assert indexes.get("a") is first
    now[0] = 61.0
    assert indexes.get("a") is not first and len(indexes.get("a")) == len(first)


def test_hybrid_finds_a_literal_keyword_and_keeps_the_cosine_as_score(store, embedder):
    retriever = MilvusRetriever(store, embedder, "a", -1.0, "hybrid", memory_max_chunks=100)
    top = retriever.search("global", 1)[0]
    assert top.source == "a/global.md"
    assert -1.0 <= top.score <= 1.0


def test_tenant_index_rejects_mismatched_vectors():
    with pytest.raises(ValueError, match="2 chunks but 1 vectors"):
        TenantIndex([StoredChunk("1", "s", "t", "", "x"), StoredChunk("2", "s", "t", "", "y")], np.zeros((1, 4)))
    assert TenantIndex([], np.zeros((0, 4))).search(np.ones(4), "q", 3, hybrid=True) == []


def test_per_request_tenant_through_the_service(tmp_path, store, onnx_path):
    store.close()
    service = RetrievalService(dataclasses.replace(section(tmp_path, onnx_path, tenant="a"), score_threshold=-1.0))
    service.warm_up()
    assert {p.source for p in service.retrieve("keys").passages} <= {"a/sets.md", "a/tuples.md", "a/global.md"}
    result = service.retrieve("keys", tenant="b")
    assert result.status is RetrievalStatus.OK and [p.source for p in result.passages] == ["b/dicts.md"]
    for bad in ("", "a b", "../etc", "x" * 129, 'a" or tenant != "'):
        with pytest.raises(ValueError, match="tenant"):
            service.retrieve("keys", tenant=bad)
    service.close()
