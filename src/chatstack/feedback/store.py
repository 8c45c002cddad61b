"""Durable record of served answers and the feedback users give on them (SQLite).

Every finished answer is recorded under its `response_id` (returned to the client with
the answer) together with the conversation it answered, so feedback can later become a
preference pair without the session still existing.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from chatstack.sqlite_db import SQLiteFile
from chatstack.text.chat_template import Message, messages_from_json, messages_to_json

MAX_CORRECTION_CHARS = 20_000


@dataclass(frozen=True)
class RatedAnswer:
    response_id: str
    prompt: list[Message]
    answer: str
    rating: int
    correction: str | None


def validate_rating(rating: int) -> int:
    if rating not in (-1, 1):
        raise ValueError(f"rating must be 1 (thumbs up) or -1 (thumbs down), got {rating}")
    return rating


class FeedbackStore:
    def __init__(self, path: str | Path):
        self.db = SQLiteFile(path)
        conn = self._connection()
        conn.execute(
            "CREATE TABLE IF NOT EXISTS responses (response_id TEXT PRIMARY KEY, session_id TEXT,"
            " prompt TEXT NOT NULL, answer TEXT NOT NULL, created_at REAL NOT NULL)"
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS feedback (response_id TEXT NOT NULL REFERENCES responses(response_id),"
            " rating INTEGER NOT NULL, correction TEXT, created_at REAL NOT NULL)"
        )

    def _connection(self) -> sqlite3.Connection:
        return self.db.connection()

    def record_response(self, response_id: str, session_id: str | None, prompt: list[Message], answer: str) -> None:
        self._connection().execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
            (response_id, session_id, messages_to_json(prompt), answer, time.time()),
        )

    def record_feedback(self, response_id: str, rating: int, correction: str | None = None) -> None:
        validate_rating(rating)
        if correction is not None and not correction.strip():
            correction = None
        if correction is not None and len(correction) > MAX_CORRECTION_CHARS:
            raise ValueError(f"correction must be at most {MAX_CORRECTION_CHARS} characters, got {len(correction)}")
        conn = self._connection()
        if conn.execute("SELECT 1 FROM responses WHERE response_id = ?", (response_id,)).fetchone() is None:
            raise ValueError(f"response_id {response_id!r} is not a known answer")
        conn.execute("INSERT INTO feedback VALUES (?, ?, ?, ?)", (response_id, rating, correction, time.time()))

    def rated_answers(self) -> list[RatedAnswer]:
        """The latest feedback per answer, oldest answer first."""
        rows = self._connection().execute(
            "SELECT r.response_id, r.prompt, r.answer, f.rating, f.correction FROM responses r"
            " JOIN feedback f ON f.response_id = r.response_id"
            " WHERE f.rowid = (SELECT MAX(rowid) FROM feedback WHERE response_id = r.response_id)"
            " ORDER BY r.created_at"
        )
        return [RatedAnswer(rid, messages_from_json(p), a, rating, c) for rid, p, a, rating, c in rows]


def dump_jsonl(records: list[dict], path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return len(records)
