"""SQLite session history: order, isolation, durability, concurrent appends."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from chatstack.sessions.store import MAX_SESSION_ID_LENGTH, SessionStore, Turn, validate_session_id


@pytest.fixture
def store(tmp_path) -> SessionStore:
    return SessionStore(tmp_path / "state" / "sessions.sqlite")


def test_new_session_has_no_history(store):
    assert store.history("nobody") == []


def test_history_is_in_append_order(store):
    turns = [Turn(f"q{i}", f"a{i}") for i in range(5)]
    for turn in turns:
        store.append("s1", turn)
    assert store.history("s1") == turns


def test_sessions_are_isolated(store):
    store.append("alice", Turn("hi", "hello alice"))
    store.append("bob", Turn("yo", "hello bob"))
    store.append("alice", Turn("again", "still alice"))
    assert store.history("alice") == [Turn("hi", "hello alice"), Turn("again", "still alice")]
    assert store.history("bob") == [Turn("yo", "hello bob")]


def test_unicode_and_empty_text_survive(store):
    turn = Turn("中文 😀 e\u0301\n\ttabs", "")
    store.append("ü-session 🙂", turn)
    assert store.history("ü-session 🙂") == [turn]


def test_history_is_durable_across_store_instances(tmp_path):
    path = tmp_path / "sessions.sqlite"
    SessionStore(path).append("s", Turn("one", "1"))
    reopened = SessionStore(path)
    reopened.append("s", Turn("two", "2"))
    assert SessionStore(path).history("s") == [Turn("one", "1"), Turn("two", "2")]


def test_delete_removes_only_that_session(store):
    store.append("a", Turn("x", "y"))
    store.append("b", Turn("x", "y"))
    store.delete("a")
    assert store.history("a") == [] and store.history("b") == [Turn("x", "y")]
    store.append("a", Turn("fresh", "start"))
    assert store.history("a") == [Turn("fresh", "start")]


def test_concurrent_appends_keep_every_turn_with_distinct_indexes(tmp_path):
    path = tmp_path / "sessions.sqlite"
    stores = [SessionStore(path), SessionStore(path)]  # like two Triton model instances
    threads, per_thread, start = 8, 15, threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                stores[n % 2].append("shared", Turn(f"t{n}-{i}", "ok"))
                stores[n % 2].append(f"own-{n}", Turn(str(i), "ok"))
        except BaseException as exc:  # surfaced below, not lost in the thread
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()

    assert errors == []
    shared = SessionStore(path).history("shared")
    assert sorted(t.user for t in shared) == sorted(f"t{n}-{i}" for n in range(threads) for i in range(per_thread))
    for n in range(threads):  # each thread's own appends kept their order
        assert [int(t.user) for t in SessionStore(path).history(f"own-{n}")] == list(range(per_thread))
        mine = [t.user for t in shared if t.user.startswith(f"t{n}-")]
        assert mine == [f"t{n}-{i}" for i in range(per_thread)]
    with sqlite3.connect(path) as conn:
        indexes = [i for (i,) in conn.execute("SELECT turn_index FROM turns WHERE session_id = 'shared' ORDER BY turn_index")]
    assert indexes == list(range(threads * per_thread))


@pytest.mark.parametrize("session_id", ["a", "user-42", "x" * MAX_SESSION_ID_LENGTH, "ünïcode 😀"])
def test_valid_session_ids(session_id):
    assert validate_session_id(session_id) == session_id


@pytest.mark.parametrize(
    ("session_id", "problem"),
    [
        ("", "1 to"),
        ("x" * (MAX_SESSION_ID_LENGTH + 1), "1 to"),
        ("bad\nid", "control characters"),
        ("nul\x00", "control characters"),
        ("tab\there", "control characters"),
    ],
)
def test_invalid_session_ids(session_id, problem):
    with pytest.raises(ValueError, match="session_id") as info:
        validate_session_id(session_id)
    assert problem in str(info.value)
