"""History-aware retrieval: a follow-up turn finds the right chunk with the earlier turn, not without."""

import pytest

from chatstack.rag.ingest import Ingestor, discover
from chatstack.rag.query import context_from_json, context_to_json, history_context, is_follow_up
from chatstack.rag.service import MilvusRetriever
from chatstack.rag.store import VectorStore

GROUPS = """# User groups

## Adding a user to a group

Run `usermod -aG GROUP USER` to add a user account to a group.

## Removing a user from a group

Run `gpasswd -d USER GROUP` to take a user account out of a group.
"""
PRINTERS = "# Printers\n\nTo remove a printer, open Settings, choose Printers and press Remove.\n"
FIRST, FOLLOW_UP = "How do I add a user to a group?", "and how do I remove one?"


@pytest.mark.parametrize(("text", "expected"), [
    ("and how do I remove one?", True),
    ("What about tuples?", True),
    ("Does it work on Windows?", True),
    ("why?", True),  # no content words of its own
    ("How do I add a user to a group?", False),
    ("What does the global statement declare?", False),
    ("", False),
])
def test_follow_up_detection(text, expected):
    assert is_follow_up(text) is expected


def test_history_context_only_for_follow_ups_and_at_most_max_turns():
    earlier = ["What is a set?", "How do I add a user to a group?"]
    assert history_context(FOLLOW_UP, earlier, 1) == ("How do I add a user to a group?",)
    assert history_context(FOLLOW_UP, earlier, 2) == tuple(earlier)
    assert history_context(FOLLOW_UP, earlier, 0) == ()
    assert history_context("What does the global statement declare?", earlier, 2) == ()
    assert history_context(FOLLOW_UP, [], 2) == ()
    with pytest.raises(ValueError, match="max_turns"):
        history_context(FOLLOW_UP, earlier, -1)


def test_context_json_round_trip_and_bad_input_names_the_field():
    assert context_from_json(context_to_json(("a", "b é"))) == ("a", "b é")
    assert context_from_json("") == () and context_from_json(None) == ()
    for bad in ("not json", '{"a": 1}', "[1, 2]", '["x"]' * 2, '[' + ','.join(['"x"'] * 11) + ']'):
        with pytest.raises(ValueError, match="query_context"):
            context_from_json(bad)


@pytest.fixture
def retriever_on(tmp_path, embedder, offsets):
    root = tmp_path / "docs"
    root.mkdir()
    (root / "groups.md").write_text(GROUPS)
    (root / "printers.md").write_text(PRINTERS)
    store = VectorStore.open(str(tmp_path / "rag.db"), "docs")
    Ingestor(store, embedder, offsets).ingest([discover(root)])
    yield lambda mode: MilvusRetriever(store, embedder, "default", -1.0, mode, memory_max_chunks=100)
    store.close()


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_follow_up_retrieves_the_right_chunk_with_history_and_not_without(retriever_on, mode):
    retriever = retriever_on(mode)
    alone = retriever.search(FOLLOW_UP, 3)
    assert alone[0].source == "docs/printers.md"
    with_history = retriever.search(FOLLOW_UP, 3, context=history_context(FOLLOW_UP, [FIRST], 2))
    assert with_history[0].section == "User groups > Removing a user from a group"
    assert with_history[1].section == "User groups > Adding a user to a group"
