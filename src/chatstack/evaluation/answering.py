"""The candidate's answers to the judge questions: generated locally or asked of a served chat ensemble.

Multi-turn questions are answered turn by turn; each later turn sees the earlier
questions and the model's own earlier answers, as in MT-Bench.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

import torch

from chatstack.evaluation.models import LoadedModel
from chatstack.evaluation.questions import JudgeQuestion
from chatstack.text.chat_template import Message, render_chat


@dataclass(frozen=True)
class Answer:
    question_id: str
    replies: tuple[str, ...]  # one per turn

    def transcript(self, question: JudgeQuestion) -> list[Message]:
        """The user turns and the replies interleaved (no system prompt)."""
        return [m for user, reply in zip(question.turns, self.replies)
                for m in (Message("user", user), Message("assistant", reply))]


class Answerer(Protocol):
    name: str

    def answer(self, question: JudgeQuestion) -> Answer: ...


class LocalAnswerer:
    """Greedy generation with transformers, using the chat template the model was trained on."""

    def __init__(self, loaded: LoadedModel, max_new_tokens: int = 128):
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.loaded, self.max_new_tokens = loaded, max_new_tokens
        self.name = str(loaded.path)

    def reply(self, messages: list[Message]) -> str:
        tokenizer, model = self.loaded.tokenizer, self.loaded.model
        ids = tokenizer(render_chat(messages), return_tensors="pt", add_special_tokens=False, verbose=False).input_ids
        ids = ids[:, -(self.loaded.max_positions - self.max_new_tokens):]  # (1, T) the most recent context
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=self.max_new_tokens,
                                 do_sample=False)
        return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()

    def answer(self, question: JudgeQuestion) -> Answer:
        messages = [Message("system", question.system_prompt())]
        replies = []
        for turn in question.turns:
            messages.append(Message("user", turn))
            replies.append(self.reply(messages))
            messages.append(Message("assistant", replies[-1]))
        return Answer(question.id, tuple(replies))


class ServedAnswerer:
    """Answers from a running chatstack Triton server (gRPC); the server keeps the turns in a session."""

    def __init__(self, url: str, max_new_tokens: int = 128):
        from chatstack.client import ChatClient

        self.client, self.max_new_tokens = ChatClient(url), max_new_tokens
        self.name = f"triton:{url}"

    def answer(self, question: JudgeQuestion) -> Answer:
        from chatstack.client import ChatOptions

        options = ChatOptions(session_id=f"eval-{question.id}-{uuid.uuid4().hex[:8]}",
                              system_prompt=question.system_prompt(), max_tokens=self.max_new_tokens,
                              temperature=0.0, seed=0)
        return Answer(question.id, tuple(self.client.complete(turn, options).text.strip() for turn in question.turns))
