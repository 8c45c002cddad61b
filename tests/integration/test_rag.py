"""Retrieval on a real Triton server: the `retrieve` step reads a real Milvus Lite store.

The store is ingested before the server starts (a Milvus Lite store is used by one
process at a time), for two tenants; the server is configured for tenant "acme".
"""

from __future__ import annotations

import dataclasses
import uuid

import pytest
import tritonclient.grpc as grpcclient

from chatstack import project
from chatstack.client import ChatClient, ChatOptions
from chatstack.config import config_from_dict
from chatstack.rag.chunking import ChunkingParams
from chatstack.rag.embedder import OnnxEmbedder, bundled_model_dir, token_offsets
from chatstack.rag.ingest import Ingestor, discover
from chatstack.rag.onnx_export import export_embedder
from chatstack.rag.retriever import passages_from_json
from chatstack.rag.store import VectorStore
from chatstack.repository.assemble import SourceLayout, assemble_repository
from chatstack.serving.server import ServerPorts, TritonServer
from tests.integration.conftest import free_ports, metric_value
from tests.integration.helpers import stream_error, text

pytestmark = pytest.mark.integration


GROUPS = """# User groups

## Adding a user to a group

Run `usermod -aG GROUP USER` to add a user account to a group.

## Removing a user from a group

Run `gpasswd -d USER GROUP` to take a user account out of a group.
"""
PRINTERS = "# Printers\n\nTo remove a printer, open Settings, choose Printers and press Remove.\n"


def write_corpus(root, files: dict[str, str]):
    root.mkdir(parents=True)
    for name, content in files.items():
        (root / name).write_text(content)
    return root


@pytest.fixture(scope="module")
def onnx(tmp_path_factory):
    return export_embedder(bundled_model_dir(), tmp_path_factory.mktemp("embedder") / "model.onnx")


ACME = {
    "sets.md": "# Sets\n\nA set holds unique items; adding an item twice keeps one copy.\n",
    "ports.html": "<h1>Ports</h1><p>The gRPC port of the demo server is 8001.</p>",
    "groups.md": GROUPS,
    "printers.md": PRINTERS,
}


def ingested_store(work, onnx):
    """Milvus Lite file holding the acme tenant's documents and another tenant's note."""
    store = VectorStore.open(str(work / "rag.db"), "docs")
    embedder, offsets = OnnxEmbedder(onnx), token_offsets()
    acme = write_corpus(work / "acme", ACME)
    other = write_corpus(work / "other", {"secret.md": "# Sets\n\nOther tenant's private note about sets.\n"})
    Ingestor(store, embedder, offsets, ChunkingParams(), tenant="acme").ingest([discover(acme)])
    Ingestor(store, embedder, offsets, ChunkingParams(), tenant="other").ingest([discover(other)])
    store.close()
    return {"milvus_uri": str(work / "rag.db"), "tenant": "acme", "embedder_onnx": str(onnx)}


@pytest.fixture(scope="module")
def rag_stack(demo_model_dir, onnx, tmp_path_factory):
    work = tmp_path_factory.mktemp("rag")
    # quote-bound decoding off unless a request asks, then binding as quote_bound_stack's does
    server = start_server(demo_model_dir, work, ingested_store(work, onnx), {"copy_enter_after": 1})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def quote_bound_stack(demo_model_dir, onnx, tmp_path_factory):
    """Quote-bound decoding on, binding after one token (a Milvus Lite file is one process's: its own)."""
    work = tmp_path_factory.mktemp("rag-quote")
    server = start_server(demo_model_dir, work, ingested_store(work, onnx),
                          {"copy_from_passages": True, "copy_enter_after": 1})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def storeless_stack(demo_model_dir, onnx, tmp_path_factory):
    """Retrieval enabled, but the Milvus Lite store does not exist."""
    work = tmp_path_factory.mktemp("rag-gone")
    server = start_server(demo_model_dir, work, {"milvus_uri": str(work / "gone" / "rag.db"),
                                                 "embedder_onnx": str(onnx)})
    yield server
    server.stop()


def start_server(model_dir, work, retrieval: dict, generation: dict | None = None) -> TritonServer:
    grpc, http, metrics = free_ports(3)
    cfg = config_from_dict({
        "model": {"dir": str(model_dir)},
        "generation": {"default_max_tokens": 16, "max_tokens_limit": 512, "default_temperature": 0.0,
                       **(generation or {})},
        "sessions": {"db_path": str(work / "sessions.sqlite")},
        "serving": {"grpc_port": grpc, "http_port": http, "metrics_port": metrics},
        "retrieval": {"enabled": True, "score_threshold": 0.2, **retrieval},
        # what the tiny test model says depends on how far its time-budgeted training got; a moderation
        # verdict on it (content_filter, no citations) is not what these tests check (test_safety.py does)
        "safety": {"output_enabled": False},
    })
    repository = assemble_repository(SourceLayout.from_root(project.ROOT), cfg, work)
    server = TritonServer(repository, ServerPorts(grpc, http, metrics), work)
    server.start(timeout_s=300)
    return server


def retrieve(url: str, query: str) -> tuple[list, str]:
    client = grpcclient.InferenceServerClient(url)
    try:
        result = client.infer("retrieve", [text("query", query)])
    finally:
        client.close()
    passages = passages_from_json(result.as_numpy("passages").reshape(-1)[0].decode("utf-8"))
    return passages, result.as_numpy("retrieval_status").reshape(-1)[0].decode("utf-8")


def test_retrieve_returns_cited_passages_of_the_configured_tenant_only(rag_stack):
    passages, status = retrieve(rag_stack.grpc_url, "What happens if I add an item to a set twice?")
    assert status == "ok"
    assert passages[0].source == "acme/sets.md" and passages[0].section == "Sets" and passages[0].score > 0.4
    assert all(p.source.startswith("acme/") for p in passages)


def test_html_passage_is_found_by_meaning(rag_stack):
    passages, _ = retrieve(rag_stack.grpc_url, "Which port does gRPC listen on?")
    assert passages[0].source == "acme/ports.html" and "8001" in passages[0].text


def ask(server: TritonServer):
    return ChatClient(server.grpc_url, timeout_s=120).complete(
        "What is a set?", ChatOptions(max_tokens=8, temperature=0.0, ignore_eos=True))


def test_chat_is_answered_with_retrieval_enabled(rag_stack):
    reply = ask(rag_stack)
    assert reply.finish_reason == "length" and reply.text
    assert reply.retrieval_status == "ok"
    assert reply.citations and reply.citations[0]["n"] == 1 and reply.citations[0]["source"] == "acme/sets.md"
    assert 0.0 <= reply.grounding_score <= 1.0


def test_ungrounded_answers_are_counted(rag_stack):
    before = metric_value(rag_stack.ports.metrics, "chatstack_ungrounded_answers_total")
    reply = ask(rag_stack)  # eight tokens of a tiny model do not restate the passage
    assert not reply.grounded
    assert metric_value(rag_stack.ports.metrics, "chatstack_ungrounded_answers_total") == before + 1


def test_missing_store_degrades_retrieval_but_chat_is_answered(storeless_stack):
    passages, status = retrieve(storeless_stack.grpc_url, "What is a set?")
    assert (passages, status) == ([], "degraded")
    reply = ask(storeless_stack)
    assert reply.finish_reason == "length" and reply.text
    assert reply.retrieval_status == "degraded" and reply.citations == []
    assert retrieval_count(storeless_stack, "degraded") >= 2


def retrieval_count(server: TritonServer, status: str) -> float:
    return metric_value(server.ports.metrics, "chatstack_retrievals_total", status=status)


def test_retrievals_are_counted_by_status(rag_stack):
    retrieve(rag_stack.grpc_url, "sets")
    assert retrieval_count(rag_stack, "ok") >= 1


def cited_sources(server: TritonServer, question: str, **options) -> list[str]:
    reply = ChatClient(server.grpc_url, timeout_s=120).complete(
        question, ChatOptions(max_tokens=4, temperature=0.0, ignore_eos=True, **options))
    assert reply.retrieval_status == "ok"
    return [c["source"] for c in reply.citations]


def test_tenant_input_selects_whose_documents_are_searched(rag_stack):
    question = "What do the notes say about sets?"
    assert "acme/sets.md" in cited_sources(rag_stack, question)  # no tenant: the configured one
    assert cited_sources(rag_stack, question, tenant="other") == ["other/secret.md"]
    assert cited_sources(rag_stack, question, tenant="nobody") == []
    error = stream_error(rag_stack.grpc_url, [text("text_input", question), text("tenant", "../acme")])
    assert error is not None and "tenant" in error


def test_follow_up_turn_retrieves_with_the_conversation(rag_stack):
    follow_up = "and how do I remove one?"
    assert cited_sources(rag_stack, follow_up)[0] == "acme/printers.md"  # alone, it is about printers
    session = f"follow-up-{uuid.uuid4().hex}"
    cited_sources(rag_stack, "How do I add a user to a group?", session_id=session)
    reply = ChatClient(rag_stack.grpc_url, timeout_s=120).complete(
        follow_up, ChatOptions(session_id=session, max_tokens=4, temperature=0.0, ignore_eos=True))
    first = reply.citations[0]
    assert (first["source"], first["section"]) == ("acme/groups.md", "User groups > Removing a user from a group")


def longest_common_run(reply: str, texts: list[str]) -> int:
    """Characters in the longest stretch of `reply` found word for word in one of `texts`."""
    best = 0
    for text in texts:
        for start in range(len(reply)):
            length = best + 1
            while start + length <= len(reply) and reply[start:start + length] in text:
                best, length = length, length + 1
    return best


def test_quote_bound_answers_copy_the_retrieved_passage_word_for_word(quote_bound_stack, rag_stack):
    question = "Which port does gRPC listen on?"  # its passage: "The gRPC port of the demo server is 8001."
    options = ChatOptions(max_tokens=24, temperature=0.0)
    bound = ChatClient(quote_bound_stack.grpc_url, timeout_s=120).complete(question, options)
    free = ChatClient(rag_stack.grpc_url, timeout_s=120).complete(question, options)
    assert bound.citations == free.citations and bound.citations[0]["source"] == "acme/ports.html"
    corpus = list(ACME.values())
    # bound at its first token found in a passage ("the", "of", "is", "." are), the answer then runs on
    # verbatim to the sentence's end: at least " is 8001."
    assert longest_common_run(bound.text, corpus) >= len(" is 8001."), bound.text
    assert longest_common_run(bound.text, corpus) > longest_common_run(free.text, corpus), (bound.text, free.text)
    # the request's quote_bound overrides the deployment's setting, both ways
    unbound = ChatClient(quote_bound_stack.grpc_url, timeout_s=120).complete(
        question, dataclasses.replace(options, quote_bound=False))
    assert unbound.text == free.text
    asked = ChatClient(rag_stack.grpc_url, timeout_s=120).complete(question, dataclasses.replace(options, quote_bound=True))
    assert asked.text == bound.text
