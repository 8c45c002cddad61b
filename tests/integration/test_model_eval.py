"""A real chatstack Triton server as the LLM judge, and as the source of a candidate's answers."""

from __future__ import annotations

import pytest

from chatstack.evaluation.answering import Answer, ServedAnswerer
from chatstack.evaluation.judge import Outcome, TritonJudge
from chatstack.evaluation.questions import load_questions
from chatstack.evaluation.run import summarise

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_chatstack_server_judges_answers_over_grpc(stack):
    questions = [q for q in load_questions() if q.category in ("multi-turn", "rag-reading")][:3]
    answers = {q.id: Answer(q.id, tuple("I am not sure." for _ in q.turns)) for q in questions}

    summary = summarise(TritonJudge(stack.grpc_url, max_tokens=24), questions, answers)

    assert summary.judge.startswith("chatstack @ ") and len(summary.grades) == 3
    assert summary.failed == 0, [g.judge_text for g in summary.grades]
    assert summary.scored + summary.unparseable == 3
    assert all(g.judge_text for g in summary.grades)  # the server's reply is kept whether or not it holds a score
    assert all((g.score is not None) == (g.outcome is Outcome.SCORED) for g in summary.grades)


def test_a_served_candidate_answers_every_turn_of_a_multi_turn_question(stack):
    question = next(q for q in load_questions() if len(q.turns) == 2)
    answer = ServedAnswerer(stack.grpc_url, max_new_tokens=8).answer(question)
    assert answer.question_id == question.id and len(answer.replies) == 2
    assert all(isinstance(r, str) for r in answer.replies)
