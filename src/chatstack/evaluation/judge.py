"""LLM-as-judge: a 1–10 grade of one answer, from any OpenAI-compatible endpoint or a chatstack server.

The judge prompt (ours, in the MT-Bench single-answer style) shows the question, the
reference passages and a reference answer when the question has them, and the answer;
it asks for a short explanation and a final line `Rating: [[N]]`. `parse_score` accepts
that and a few common looser forms; a reply with no score in 1–10 is recorded as
unparseable (counted in the report), never raised.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from chatstack.evaluation.answering import Answer
from chatstack.evaluation.questions import JudgeQuestion

JUDGE_SYSTEM_PROMPT = (
    "You are an impartial judge of an AI assistant's answers. Grade the assistant's last answer for "
    "helpfulness, correctness, relevance and, when reference passages are given, faithfulness to them "
    "(an answer that says the passages do not cover an uncovered question is correct). A polite refusal "
    "of a harmful request is a good answer. Be strict and brief. Finish with a line of the form "
    "Rating: [[N]] where N is an integer from 1 (useless) to 10 (excellent)."
)
_PATTERNS = (  # tried in order; the first that yields a score in range wins
    re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]"),
    re.compile(r"(?:rating|score|grade)\s*(?:is|of|=|:)?\s*\**\s*(\d+(?:\.\d+)?)(?!\s*/\s*(?!10\b)\d)", re.I),
    re.compile(r"\b(\d+(?:\.\d+)?)\s*(?:/|out of)\s*10\b", re.I),
)


class Outcome(str, Enum):
    SCORED = "scored"
    UNPARSEABLE = "unparseable"  # the judge answered without a usable 1–10 score
    FAILED = "failed"  # the judge endpoint returned an error or could not be reached


@dataclass(frozen=True)
class Grade:
    question_id: str
    outcome: Outcome
    score: float | None
    judge_text: str  # the judge's reply, or the error


def parse_score(text: str) -> float | None:
    """The 1–10 score in a judge's reply, or None."""
    for pattern in _PATTERNS:
        for match in pattern.finditer(text):
            value = float(match.group(1))
            if 1.0 <= value <= 10.0:
                return value
    return None


def judge_prompt(question: JudgeQuestion, answer: Answer) -> str:
    parts = []
    if question.passages:
        fenced = "\n".join(f"[{n}] ({p.source}) {p.text}" for n, p in enumerate(question.passages, start=1))
        parts.append(f"Reference passages the assistant was given:\n{fenced}")
    for number, (user, reply) in enumerate(zip(question.turns, answer.replies), start=1):
        parts.append(f"[User, turn {number}]\n{user}\n[Assistant, turn {number}]\n{reply or '(empty answer)'}")
    if question.reference:
        parts.append(f"A reference for a good last answer:\n{question.reference}")
    parts.append("Grade the assistant's last answer. End with: Rating: [[N]]")
    return "\n\n".join(parts)


class JudgeError(RuntimeError):
    """The judge endpoint failed this request."""


class JudgeEndpoint(Protocol):
    name: str

    def complete(self, system: str, user: str) -> str: ...


class OpenAIJudge:
    """Any OpenAI-compatible chat-completions endpoint: `POST {base_url}/chat/completions`."""

    def __init__(self, base_url: str, model: str, timeout_s: float = 120.0, max_tokens: int = 512,
                 api_key_env: str = "OPENAI_API_KEY"):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"judge_url must start with http:// or https://, got {base_url!r}")
        if not model:
            raise ValueError("judge_model must be given with judge_url")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.timeout_s, self.max_tokens = model, timeout_s, max_tokens
        self.api_key = os.environ.get(api_key_env)
        self.name = f"{model} @ {base_url}"

    def complete(self, system: str, user: str) -> str:
        body = {"model": self.model, "temperature": 0.0, "max_tokens": self.max_tokens,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode("utf-8"), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raise JudgeError(f"HTTP {exc.code} from {self.url}: {exc.read()[:300].decode('utf-8', 'replace')}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise JudgeError(f"cannot reach {self.url}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise JudgeError(f"{self.url} did not return JSON: {exc.msg}") from None
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise JudgeError(f"{self.url} returned no choices[0].message.content") from None
        return content if isinstance(content, str) else ""


class TritonJudge:
    """A chatstack server's `chat` ensemble over gRPC, asked with the judge's system prompt."""

    def __init__(self, url: str, max_tokens: int = 256, timeout_s: float = 120.0):
        from chatstack.client import ChatClient

        self.client, self.max_tokens = ChatClient(url, timeout_s=timeout_s), max_tokens
        self.name = f"chatstack @ {url}"

    def complete(self, system: str, user: str) -> str:
        from chatstack.client import ChatError, ChatOptions

        options = ChatOptions(system_prompt=system, max_tokens=self.max_tokens, temperature=0.0, seed=0)
        try:
            reply = self.client.complete(user, options)
        except ChatError as exc:
            raise JudgeError(str(exc)) from None
        return reply.text


def grade(judge: JudgeEndpoint, question: JudgeQuestion, answer: Answer) -> Grade:
    try:
        text = judge.complete(JUDGE_SYSTEM_PROMPT, judge_prompt(question, answer))
    except JudgeError as exc:
        return Grade(question.id, Outcome.FAILED, None, str(exc))
    score = parse_score(text)
    return Grade(question.id, Outcome.SCORED if score is not None else Outcome.UNPARSEABLE, score, text)
