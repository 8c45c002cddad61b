"""The judge question set: MT-Bench-style prompts written for chatstack (`data/judge/*.jsonl`).

One JSON object per line:
    {"id": "reading-01", "category": "rag-reading", "turns": ["question", "follow-up", ...],
     "passages": [{"source": "...", "text": "..."}],   # optional: reference passages (RAG reading)
     "reference": "..."}                                 # optional: what a good answer says
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from chatstack import project
from chatstack.alignment.reader_data import SYSTEM_PROMPT
from chatstack.rag.retriever import Passage, with_passages

DEFAULT_QUESTIONS = project.ROOT / "data" / "judge" / "questions.jsonl"
_KEYS = {"id", "category", "turns", "passages", "reference"}


@dataclass(frozen=True)
class JudgeQuestion:
    id: str
    category: str
    turns: tuple[str, ...]
    passages: tuple[Passage, ...] = ()
    reference: str | None = None

    def system_prompt(self, base: str = SYSTEM_PROMPT) -> str:
        """The system prompt the candidate sees: the passages fenced as serving renders them."""
        return with_passages(base, list(self.passages))


def _question(raw: object, where: str) -> JudgeQuestion:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a JSON object")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(_KEYS)}")
    for key in ("id", "category"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise ValueError(f"{where}: {key} must be a non-empty string")
    turns = raw.get("turns")
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
        raise ValueError(f"{where}: turns must be a non-empty list of non-empty strings")
    passages = raw.get("passages", [])
    if not isinstance(passages, list) or not all(
            isinstance(p, dict) and isinstance(p.get("text"), str) and isinstance(p.get("source"), str)
            for p in passages):
        raise ValueError(f"{where}: passages must be a list of {{source, text}} strings")
    reference = raw.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise ValueError(f"{where}: reference must be a string")
    return JudgeQuestion(raw["id"], raw["category"], tuple(turns),
                         tuple(Passage(text=p["text"], source=p["source"], score=1.0) for p in passages), reference)


def load_questions(path: Path = DEFAULT_QUESTIONS, limit: int | None = None) -> list[JudgeQuestion]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"questions: {path} does not exist")
    questions, seen = [], set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not JSON ({exc.msg})") from None
        question = _question(raw, where)
        if question.id in seen:
            raise ValueError(f"{where}: duplicate id {question.id!r}")
        seen.add(question.id)
        questions.append(question)
    if not questions:
        raise ValueError(f"questions: {path} holds no questions")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    return questions[:limit]
