"""The `generate` step's logic: prompt → backend → text deltas → stored turn."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from chatstack.backends.base import FinishReason, GenerationBackend, GenerationRequest
from chatstack.config import DeploymentConfig, SafetySection
from chatstack.feedback.store import FeedbackStore
from chatstack.rag.citations import AnswerGrounding, citations_json
from chatstack.rag.passage_copy import copy_constraint
from chatstack.rag.retriever import with_passages
from chatstack.safety.moderator import Moderator
from chatstack.safety.output_moderation import StreamModerator
from chatstack.safety.rules import REFUSAL
from chatstack.serving.chat_request import ChatRequest
from chatstack.serving.sampling_fields import logprobs_json
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
    token_count: int = 0
    citations: str = "[]"  # final delta: the passages the answer could cite, as JSON
    grounded: bool = False  # final delta: the grounding check's verdict (False when not checked)
    grounding_score: float = 0.0
    logprobs: str = "[]"  # JSON, one entry per token this delta accounts for (when asked for)


class GenerationError(RuntimeError):
    """The backend failed while generating (not the caller's fault)."""


def build_backend(cfg: DeploymentConfig) -> GenerationBackend:
    if cfg.model.backend == "hf":
        from chatstack.backends.hf import HFBackend

        return HFBackend(cfg.model.dir, device=cfg.model.device, dtype=cfg.model.dtype)
    if cfg.model.backend == "native":
        from chatstack.backends.native import NativeBackend

        return NativeBackend(cfg.model.dir, device=cfg.model.device, dtype=cfg.model.dtype,
                             engine_config=cfg.engine.engine_config())
    raise ValueError(f"model.backend {cfg.model.backend!r} is not available")


class ChatService:
    def __init__(self, backend: GenerationBackend, tokenizer, store: SessionStore, answers: FeedbackStore | None = None,
                 moderator: Moderator | None = None, safety: SafetySection = SafetySection()):
        self.backend = backend
        self.tokenizer = tokenizer
        self.store = store
        self.answers = answers
        self.moderator = moderator  # None: no output moderation
        self.safety = safety
        self.grounding: AnswerGrounding | None = None  # set by from_config when retrieval is on
        self.copy_from_passages = False  # set by from_config from generation.copy_from_passages
        self.copy_enter_after = 2
        self.stop_token_ids = stop_token_ids(tokenizer)

    @classmethod
    def from_config(cls, cfg: DeploymentConfig, safety_counters=None) -> "ChatService":
        db = cfg.sessions.db_path
        moderator = Moderator.from_config(cfg.safety, safety_counters) if cfg.safety.output_enabled else None
        service = cls(build_backend(cfg), load_tokenizer(Path(cfg.model.dir)), SessionStore(db), FeedbackStore(db),
                      moderator, cfg.safety)
        service.grounding = AnswerGrounding(cfg.retrieval) if cfg.retrieval.enabled else None
        service.copy_from_passages = cfg.generation.copy_from_passages
        service.copy_enter_after = cfg.generation.copy_enter_after
        return service

    def prompt_text(self, request: ChatRequest) -> str:
        messages = list(request.messages)
        if messages[0].role == "system":
            messages[0] = Message("system", with_passages(messages[0].content, request.passages))
        elif request.passages:
            messages.insert(0, Message("system", with_passages("", request.passages)))
        return render_chat(messages, add_generation_prompt=True)

    def prompt_ids(self, request: ChatRequest) -> tuple[int, ...]:
        return tuple(self.tokenizer.encode(self.prompt_text(request), add_special_tokens=False))

    def generation_request(self, request_id: str, request: ChatRequest) -> GenerationRequest:
        """The backend's request; quote-bound over the passages when the request (`quote_bound`) or, when it does
        not say, the deployment (`copy_from_passages`) asks."""
        text = self.prompt_text(request)
        ids = tuple(self.tokenizer.encode(text, add_special_tokens=False))
        wanted = self.copy_from_passages if request.quote_bound is None else request.quote_bound
        copy = (copy_constraint(self.tokenizer, text, ids, list(request.passages), self.copy_enter_after)
                if wanted and request.passages else None)
        return GenerationRequest(request_id, ids, request.sampling, self.stop_token_ids, copy)

    def start(self, request_id: str, request: ChatRequest) -> Iterator[ChatDelta]:
        """Validate and admit the request now (ValueError on bad input), then stream lazily."""
        if request.input_blocked:
            return iter([ChatDelta(request.input_refusal or REFUSAL, FinishReason.CONTENT_FILTER, blocked=True)])
        generation = self.generation_request(request_id, request)
        self.backend.submit(generation)
        return self._stream(request_id, request)

    def _record(self, response_id: str, request: ChatRequest, answer: str) -> None:
        """Keep the finished turn in its session, and the answer for later feedback (PII redacted)."""
        user_text = request.redacted_user_text or request.user_text
        if request.session_id is not None:
            self.store.append(request.session_id, Turn(user_text, answer))
        if self.answers is not None:
            prompt = [*request.messages[:-1], Message("user", user_text)]
            self.answers.record_response(response_id, request.session_id, prompt, answer)

    def cancel(self, request_id: str) -> None:
        self.backend.cancel(request_id)

    def _output_guard(self, request_id: str) -> StreamModerator | None:
        if self.moderator is None:
            return None
        return StreamModerator.for_request(self.moderator, request_id, self.safety.output_window_chars,
                                           self.safety.output_check_every_chars)

    def _stream(self, request_id: str, request: ChatRequest) -> Iterator[ChatDelta]:
        """Token ids → text (detokenizer) → stop strings → output moderation → deltas."""
        detokenizer = IncrementalDetokenizer(self.tokenizer)
        stops = StopStringMatcher(request.stop_words)
        guard = self._output_guard(request_id)
        outputs = self.backend.stream(request_id, coalesce=True)
        reply: list[str] = []
        stopped, pending_tokens = False, 0
        pending_logprobs: list = []  # reports of the tokens counted in pending_tokens
        for output in outputs:
            if output.finish_reason is FinishReason.ERROR:
                raise GenerationError(output.error or "generation failed")
            final = output.finish_reason is not None
            pending_tokens += len(output.new_token_ids)
            pending_logprobs.extend(output.logprobs)
            delta = ""
            if not stopped:
                check = stops.feed(detokenizer.add(output.new_token_ids) + (detokenizer.flush() if final else ""))
                delta = check.text + (stops.flush() if final and not check.stopped else "")
                if check.stopped:
                    stopped = True
                    self.backend.cancel(request_id)
            if guard is not None:
                step = guard.step(delta, final)
                if step.violation is not None:
                    self.backend.cancel(request_id)
                    for _ in outputs:  # drain: the backend's last output ends the request
                        pass
                    refusal = step.text + ("\n\n" if step.text else "") + step.violation.message
                    yield ChatDelta(refusal, FinishReason.CONTENT_FILTER, blocked=True, token_count=pending_tokens)
                    return
                delta = step.text
            if not final:
                if delta:
                    reply.append(delta)
                    yield ChatDelta(delta, token_count=pending_tokens, logprobs=self._logprobs(pending_logprobs))
                    pending_tokens, pending_logprobs = 0, []
                continue
            finish = FinishReason.STOP if stopped else output.finish_reason
            reply.append(delta)
            if finish in (FinishReason.STOP, FinishReason.LENGTH):
                self._record(request_id, request, "".join(reply))
            final_delta = self._final_delta(delta, finish, pending_tokens, "".join(reply), request)
            yield dataclasses.replace(final_delta, logprobs=self._logprobs(pending_logprobs))
            return

    def _logprobs(self, reports: list) -> str:
        return logprobs_json(reports, self.tokenizer) if reports else "[]"

    def _final_delta(self, delta: str, finish: FinishReason, tokens: int, answer: str, request: ChatRequest) -> ChatDelta:
        """The last delta, with citations and the grounding verdict when passages were retrieved."""
        if not request.passages:
            return ChatDelta(delta, finish, token_count=tokens)
        report = self.grounding.check(answer, request.passages) if self.grounding is not None else None
        return ChatDelta(delta, finish, token_count=tokens, citations=citations_json(request.passages),
                         grounded=bool(report and report.grounded), grounding_score=report.score if report else 0.0)
