"""Durable session history in SQLite (WAL mode, safe across Triton model processes)."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from chatstack.sqlite_db import SQLiteFile

MAX_SESSION_ID_LENGTH = 256


@dataclass(frozen=True)
class Turn:
    """One exchange: the user's message and the assistant's reply."""

    user: str
    assistant: str


def validate_session_id(session_id: str) -> str:
    if not session_id or len(session_id) > MAX_SESSION_ID_LENGTH:
        raise ValueError(f"session_id must be 1 to {MAX_SESSION_ID_LENGTH} characters, got {len(session_id)}")
    if any(ord(c) < 32 for c in session_id):
        raise ValueError("session_id must not contain control characters")
    return session_id


class SessionStore:
    """Append-only turns per session; one connection per thread."""

    def __init__(self, path: str | Path):
        self.db = SQLiteFile(path)
        self.path = self.db.path
        with self._connection() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS turns ("
                " session_id TEXT NOT NULL, turn_index INTEGER NOT NULL,"
                " user TEXT NOT NULL, assistant TEXT NOT NULL, created_at REAL NOT NULL,"
                " PRIMARY KEY (session_id, turn_index))"
            )

    def _connection(self) -> sqlite3.Connection:
        return self.db.connection()

    def history(self, session_id: str) -> list[Turn]:
        rows = self._connection().execute(
            "SELECT user, assistant FROM turns WHERE session_id = ? ORDER BY turn_index", (session_id,)
        )
        return [Turn(user, assistant) for user, assistant in rows]

    def append(self, session_id: str, turn: Turn) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            (next_index,) = conn.execute(
                "SELECT COALESCE(MAX(turn_index) + 1, 0) FROM turns WHERE session_id = ?", (session_id,)
            ).fetchone()
            conn.execute(
                "INSERT INTO turns VALUES (?, ?, ?, ?, ?)",
                (session_id, next_index, turn.user, turn.assistant, time.time()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def delete(self, session_id: str) -> None:
        self._connection().execute("DELETE FROM turns WHERE session_id = ?", (session_id,))
