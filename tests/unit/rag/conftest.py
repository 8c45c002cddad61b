"""Fixtures for the retrieval tests: the real MiniLM embedder, exported to ONNX once per session,
and an empty Milvus Lite collection per test."""

from __future__ import annotations

import pytest

from chatstack.rag.embedder import OnnxEmbedder, bundled_model_dir, token_offsets
from chatstack.rag.onnx_export import export_embedder
from chatstack.rag.store import VectorStore


@pytest.fixture(scope="session")
def onnx_path(tmp_path_factory):
    return export_embedder(bundled_model_dir(), tmp_path_factory.mktemp("embedder") / "model.onnx")


@pytest.fixture(scope="session")
def embedder(onnx_path) -> OnnxEmbedder:
    return OnnxEmbedder(onnx_path)


@pytest.fixture(scope="session")
def offsets():
    return token_offsets()


@pytest.fixture
def store(tmp_path):
    opened = VectorStore.open(str(tmp_path / "rag.db"), "docs")
    yield opened
    opened.close()
