"""Parsing the `generate` step's inputs into one validated `ChatRequest`."""

from __future__ import annotations

from dataclasses import dataclass

from chatstack.backends.base import SamplingParams
from chatstack.config import DeploymentConfig
from chatstack.rag.retriever import Passage, passages_from_json
from chatstack.serving import fields
from chatstack.serving.sampling_fields import parse_sampling, parse_stop_words
from chatstack.sessions.store import validate_session_id
from chatstack.text.chat_template import Message, messages_from_json


@dataclass(frozen=True)
class ChatRequest:
    messages: list[Message]
    passages: list[Passage]
    input_blocked: bool
    input_reason: str
    session_id: str | None
    sampling: SamplingParams
    stop_words: tuple[str, ...]
    stream: bool
    input_refusal: str = ""  # the policy's message for a blocked input
    redacted_user_text: str | None = None  # the user turn with PII replaced, for storage
    retrieval_status: str = "disabled"  # "ok" | "disabled" | "degraded"
    quote_bound: bool | None = None  # None: the deployment's generation.copy_from_passages

    @property
    def user_text(self) -> str:
        return self.messages[-1].content


def parse_chat_request(tensors: fields.Tensors, cfg: DeploymentConfig) -> ChatRequest:
    messages = messages_from_json(fields.required_text(tensors, "messages"))
    if not messages or messages[-1].role != "user":
        raise ValueError("messages must end with the user's turn")
    stop_words = parse_stop_words(tensors)
    session_id = fields.optional_text(tensors, "session_id")
    stream = fields.optional_bool(tensors, "stream")
    return ChatRequest(
        messages=messages,
        passages=passages_from_json(fields.optional_text(tensors, "passages") or "[]"),
        input_blocked=bool(fields.optional_bool(tensors, "input_blocked")),
        input_reason=fields.optional_text(tensors, "input_reason") or "",
        session_id=None if session_id is None else validate_session_id(session_id),
        sampling=parse_sampling(tensors, cfg),
        stop_words=stop_words,
        stream=bool(stream),
        input_refusal=fields.optional_text(tensors, "input_refusal") or "",
        redacted_user_text=fields.optional_text(tensors, "redacted_query"),
        retrieval_status=fields.optional_text(tensors, "retrieval_status") or "disabled",
        quote_bound=fields.optional_bool(tensors, "quote_bound"),
    )
