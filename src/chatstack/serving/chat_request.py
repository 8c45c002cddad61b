"""Parsing the `generate` step's inputs into one validated `ChatRequest`."""

from __future__ import annotations

from dataclasses import dataclass

from chatstack.backends.base import SamplingParams
from chatstack.config import DeploymentConfig
from chatstack.rag.retriever import Passage, passages_from_json
from chatstack.serving import fields
from chatstack.serving.preprocess import resolve_max_tokens
from chatstack.sessions.store import validate_session_id
from chatstack.text.chat_template import Message, messages_from_json

MAX_STOP_WORDS = 16


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

    @property
    def user_text(self) -> str:
        return self.messages[-1].content


def parse_sampling(tensors: fields.Tensors, cfg: DeploymentConfig) -> SamplingParams:
    gen = cfg.generation
    temperature = fields.optional_float(tensors, "temperature")
    top_p = fields.optional_float(tensors, "top_p")
    top_k = fields.optional_int(tensors, "top_k", 0)
    return SamplingParams(
        max_tokens=resolve_max_tokens(tensors, cfg),
        temperature=gen.default_temperature if temperature is None else temperature,
        top_p=gen.default_top_p if top_p is None else top_p,
        top_k=gen.default_top_k if top_k is None else top_k,
        seed=fields.optional_int(tensors, "seed", 0),
        ignore_eos=bool(fields.optional_bool(tensors, "ignore_eos")),
    )


def parse_chat_request(tensors: fields.Tensors, cfg: DeploymentConfig) -> ChatRequest:
    messages = messages_from_json(fields.required_text(tensors, "messages"))
    if not messages or messages[-1].role != "user":
        raise ValueError("messages must end with the user's turn")
    stop_words = fields.text_list(tensors, "stop_words")
    if len(stop_words) > MAX_STOP_WORDS:
        raise ValueError(f"stop_words allows at most {MAX_STOP_WORDS} entries, got {len(stop_words)}")
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
    )
