"""The `generate` step's logic: prompt → backend → text deltas → stored turn."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from chatstack.backends.base import FinishReason, GenerationBackend, GenerationRequest
from chatstack.config import DeploymentConfig
from chatstack.feedback.store import FeedbackStore
from chatstack.rag.retriever import with_passages
from chatstack.safety.rules import REFUSAL
from chatstack.serving.chat_request import ChatRequest
from chatstack.sessions.store import SessionStore, Turn
from chatstack.text.chat_template import Message, render_chat
from chatstack.text.detokenizer import IncrementalDetokenizer
from chatstack.text.stop_strings import StopStringMatcher
from chatstack.text.tokenizer import load_tokenizer, stop_token_ids


@dataclass(frozen=True)
class ChatDelta:
    """Text produced since the previous delta; the last one carries `finish_reason`."""

    text: str
    finish_reason: FinishReason | None = None
    blocked: bool = False
    error: str | None = None
    token_count: int = 0


class GenerationError(RuntimeError):
    """The backend failed while generating (not the caller's fault)."""


def build_backend(cfg: DeploymentConfig) -> GenerationBackend:
    if cfg.model.backend == "hf":
        from chatstack.backends.hf import HFBackend

        return HFBackend(cfg.model.dir, device=cfg.model.device, dtype=cfg.model.dtype)
    if cfg.model.backend == "native":
        from chatstack.backends.native import NativeBackend

        return NativeBackend(cfg.model.dir, device=cfg.model.device, dtype=cfg.model.dtype)
    raise ValueError(f"model.backend {cfg.model.backend!r} is not available")


class ChatService:
    def __init__(self, backend: GenerationBackend, tokenizer, store: SessionStore, answers: FeedbackStore | None = None):
        self.backend = backend
        self.tokenizer = tokenizer
        self.store = store
        self.answers = answers
        self.stop_token_ids = stop_token_ids(tokenizer)

    @classmethod
    def from_config(cls, cfg: DeploymentConfig) -> "ChatService":
        db = cfg.sessions.db_path
        return cls(build_backend(cfg), load_tokenizer(Path(cfg.model.dir)), SessionStore(db), FeedbackStore(db))

    def prompt_ids(self, request: ChatRequest) -> tuple[int, ...]:
        messages = list(request.messages)
        if messages[0].role == "system":
            messages[0] = Message("system", with_passages(messages[0].content, request.passages))
        elif request.passages:
            messages.insert(0, Message("system", with_passages("", request.passages)))
        text = render_chat(messages, add_generation_prompt=True)
        return tuple(self.tokenizer.encode(text, add_special_tokens=False))

    def start(self, request_id: str, request: ChatRequest) -> Iterator[ChatDelta]:
        """Validate and admit the request now (ValueError on bad input), then stream lazily."""
        if request.input_blocked:
            return iter([ChatDelta(REFUSAL, FinishReason.CONTENT_FILTER, blocked=True)])
        generation = GenerationRequest(request_id, self.prompt_ids(request), request.sampling, self.stop_token_ids)
        self.backend.submit(generation)
        return self._stream(request_id, request)

    def _record(self, response_id: str, request: ChatRequest, answer: str) -> None:
        """Keep the finished turn in its session, and the answer for later feedback."""
        if request.session_id is not None:
            self.store.append(request.session_id, Turn(request.user_text, answer))
        if self.answers is not None:
            self.answers.record_response(response_id, request.session_id, request.messages, answer)

    def cancel(self, request_id: str) -> None:
        self.backend.cancel(request_id)

    def _stream(self, request_id: str, request: ChatRequest) -> Iterator[ChatDelta]:
        detokenizer = IncrementalDetokenizer(self.tokenizer)
        stops = StopStringMatcher(request.stop_words)
        reply: list[str] = []
        stopped = False
        for output in self.backend.stream(request_id):
            if output.finish_reason is FinishReason.ERROR:
                raise GenerationError(output.error or "generation failed")
            text = "" if stopped else detokenizer.add(output.new_token_ids)
            if output.finish_reason is not None and not stopped:
                text += detokenizer.flush()
            check = stops.feed(text) if not stopped else None
            if check is not None and check.stopped:
                stopped = True
                self.backend.cancel(request_id)
            delta = check.text if check is not None else ""
            if output.finish_reason is None:
                if delta:
                    reply.append(delta)
                    yield ChatDelta(delta, token_count=len(output.new_token_ids))
                continue
            finish = FinishReason.STOP if stopped else output.finish_reason
            if not stopped:
                delta += stops.flush()
            reply.append(delta)
            if finish in (FinishReason.STOP, FinishReason.LENGTH):
                self._record(request_id, request, "".join(reply))
            yield ChatDelta(delta, finish)
            return
