"""The judge client over real HTTP: score parsing, failures counted not raised, a real model as judge."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chatstack.evaluation.answering import Answer
from chatstack.evaluation.judge import JUDGE_SYSTEM_PROMPT, OpenAIJudge, Outcome, grade, judge_prompt, parse_score
from chatstack.evaluation.openai_endpoint import ChatCompletionsServer, parse_request
from chatstack.evaluation.questions import load_questions
from chatstack.evaluation.run import summarise


@pytest.mark.parametrize("text, score", [
    ("Clear and correct.\nRating: [[7]]", 7.0), ("rating: 8", 8.0), ("I would give it 6/10.", 6.0),
    ("Score: 3 out of 10", 3.0), ("**Rating:** 9", 9.0), ("Rating: [[2.5]]", 2.5),
    ("Rating: [[0]]", None), ("Rating: [[11]]", None), ("no number at all", None), ("score 5/7", None), ("", None),
])
def test_parse_score(text, score):
    assert parse_score(text) == score


class RuleBasedJudgeEndpoint:
    """NOT a model: a fixed-rule OpenAI-compatible endpoint that exercises the judge client's HTTP and parsing.

    The reply depends on a marker in the graded answer: SCORE7 → a well-formed rating, GARBLED → text with no
    score, ERROR500 → an HTTP 500, BADJSON → a body that is not JSON. Every request body is kept.
    """

    def __init__(self):
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.requests.append(body)
                endpoint.headers.append(dict(self.headers))
                prompt = body["messages"][-1]["content"]
                if "ERROR500" in prompt:
                    return self._send(500, b'{"error": "boom"}')
                if "BADJSON" in prompt:
                    return self._send(200, b"<html>not json</html>")
                content = "Good.\nRating: [[7]]" if "SCORE7" in prompt else "I cannot decide."
                self._send(200, json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode())

            def _send(self, status, data):
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def rule_endpoint():
    endpoint = RuleBasedJudgeEndpoint()
    yield endpoint
    endpoint.stop()


def test_judge_client_scores_counts_unparseable_and_survives_errors(rule_endpoint, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    questions = load_questions()[:4]
    markers = ["SCORE7", "GARBLED", "ERROR500", "BADJSON"]
    answers = {q.id: Answer(q.id, tuple(f"{m} reply" for _ in q.turns)) for q, m in zip(questions, markers)}

    summary = summarise(OpenAIJudge(rule_endpoint.base_url, "judge-x"), questions, answers)

    assert [g.outcome for g in summary.grades] == [Outcome.SCORED, Outcome.UNPARSEABLE, Outcome.FAILED,
                                                   Outcome.FAILED]
    assert (summary.scored, summary.unparseable, summary.failed, summary.mean_score) == (1, 1, 2, 7.0)
    assert "HTTP 500" in summary.grades[2].judge_text and "not return JSON" in summary.grades[3].judge_text
    body = rule_endpoint.requests[0]
    assert body["model"] == "judge-x" and body["temperature"] == 0.0
    assert body["messages"][0] == {"role": "system", "content": JUDGE_SYSTEM_PROMPT}
    assert questions[0].turns[0] in body["messages"][1]["content"]
    assert rule_endpoint.headers[0]["Authorization"] == "Bearer sk-test"


def test_unreachable_judge_is_a_failed_grade_not_a_crash():
    question = load_questions()[0]
    judge = OpenAIJudge("http://127.0.0.1:9/v1", "nobody", timeout_s=5)
    result = grade(judge, question, Answer(question.id, ("x",)))
    assert result.outcome is Outcome.FAILED and "cannot reach" in result.judge_text


def test_judge_prompt_shows_every_turn_passages_and_reference():
    question = next(q for q in load_questions() if q.passages)
    multi = next(q for q in load_questions() if len(q.turns) > 1)
    prompt = judge_prompt(question, Answer(question.id, ("It does nothing [1].",)))
    assert question.passages[0].text in prompt and question.reference in prompt and "[[N]]" in prompt
    prompt = judge_prompt(multi, Answer(multi.id, ("first", "")))
    assert multi.turns[1] in prompt and "(empty answer)" in prompt


@pytest.mark.parametrize("url, model", [("127.0.0.1:8000/v1", "m"), ("http://127.0.0.1:8000/v1", "")])
def test_bad_judge_settings_are_rejected(url, model):
    with pytest.raises(ValueError, match="judge_"):
        OpenAIJudge(url, model)


@pytest.mark.parametrize("body, field", [
    (b"not json", "body"), (b"[]", "body"), (b'{"messages": []}', "messages"),
    (b'{"messages": [{"role": "user"}]}', "messages"), (b'{"messages": [{"role": "wizard", "content": "x"}]}', "role"),
    (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', "max_tokens"),
])
def test_endpoint_rejects_bad_requests_naming_the_field(body, field):
    with pytest.raises(ValueError, match=field):
        parse_request(body)


def test_a_real_small_model_served_over_http_judges_every_question(tiny_pair):
    server = ChatCompletionsServer(tiny_pair[0]).start()
    try:
        questions = load_questions()[:3]
        answers = {q.id: Answer(q.id, tuple("An answer." for _ in q.turns)) for q in questions}
        judge = OpenAIJudge(server.base_url, "tiny", max_tokens=16)
        summary = summarise(judge, questions, answers)
        with pytest.raises(urllib.error.HTTPError, match="400"):
            urllib.request.urlopen(urllib.request.Request(server.base_url + "/chat/completions", b"{}", method="POST"))
    finally:
        server.stop()
    # an untrained model writes no rating: every answer is graded, none fails, the unparseable ones are counted
    assert summary.failed == 0 and summary.scored + summary.unparseable == 3
    assert all(isinstance(g.judge_text, str) for g in summary.grades)
