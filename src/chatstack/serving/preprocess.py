"""The `preprocess` step: validate the user turn and build the conversation to answer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chatstack.config import DeploymentConfig
from chatstack.rag.query import history_context
from chatstack.serving import fields
from chatstack.serving.sampling_fields import parse_sampling, parse_stop_words, resolve_max_tokens
from chatstack.sessions.history import build_conversation
from chatstack.sessions.store import SessionStore, validate_session_id
from chatstack.text.chat_template import Message
from chatstack.text.tokenizer import load_tokenizer, model_context_window


@dataclass(frozen=True)
class Conversation:
    messages: list[Message]
    query: str  # the user's turn, as typed
    retrieval_context: tuple[str, ...]  # earlier user turns `retrieve` searches with, when the turn is a follow-up


class Preprocessor:
    def __init__(self, cfg: DeploymentConfig):
        self.cfg = cfg
        self.tokenizer = load_tokenizer(Path(cfg.model.dir))
        self.context_window = model_context_window(Path(cfg.model.dir))
        self.store = SessionStore(cfg.sessions.db_path)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def run(self, tensors: fields.Tensors) -> Conversation:
        user_text = fields.required_text(tensors, "text_input")
        parse_sampling(tensors, self.cfg)  # fail fast: reject bad sampling fields before any other step
        parse_stop_words(tensors)
        session_id = fields.optional_text(tensors, "session_id")
        system_prompt = fields.optional_text(tensors, "system_prompt")
        max_tokens = resolve_max_tokens(tensors, self.cfg)
        history = self.store.history(validate_session_id(session_id)) if session_id is not None else []
        budget = self.context_window - max_tokens - self.cfg.sessions.retrieval_reserve_tokens
        messages = build_conversation(
            self.cfg.sessions.system_prompt if system_prompt is None else system_prompt,
            history,
            user_text,
            budget,
            self.count_tokens,
        )
        earlier = [turn.user for turn in history]
        return Conversation(messages, user_text, history_context(user_text, earlier, self.cfg.retrieval.history_turns))
