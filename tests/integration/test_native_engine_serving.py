"""The chat ensemble served by the native engine: same answers as the HF baseline, and cancellation."""

from __future__ import annotations

import time

import pytest

from chatstack.client import ChatClient, ChatOptions
from tests.integration.conftest import start_stack
from tests.integration.helpers import start_then_disconnect, stream_many

pytestmark = pytest.mark.integration

QUESTIONS = ["What is a list comprehension?", "Explain the with statement.", "What does yield do?"]


@pytest.fixture(scope="module")
def native_stack(demo_model_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("native")
    running = start_stack(demo_model_dir, work, work / "sessions.sqlite", backend="native")
    yield running
    running.server.stop()


@pytest.mark.parametrize("question", QUESTIONS)
def test_native_engine_answers_exactly_like_the_hf_baseline(stack, native_stack, question):
    options = ChatOptions(max_tokens=24, temperature=0.0, ignore_eos=True)
    baseline = ChatClient(stack.grpc_url, timeout_s=120).complete(question, options)
    native = ChatClient(native_stack.grpc_url, timeout_s=120).complete(question, options)
    assert native.text == baseline.text
    assert native.finish_reason == baseline.finish_reason == "length"


def test_concurrent_streams_on_the_native_engine_all_finish(native_stack):
    finished = stream_many(native_stack.grpc_url, QUESTIONS * 2, ChatOptions(max_tokens=16, temperature=0.0, ignore_eos=True))
    assert finished == {str(i) for i in range(len(QUESTIONS) * 2)}


def test_cancel_on_the_native_engine_stops_generation(native_stack):
    before = native_stack.metric("chatstack_requests_finished_total", reason="cancelled")
    start_then_disconnect(native_stack.grpc_url, ChatOptions(max_tokens=400, ignore_eos=True, temperature=0.0))
    deadline = time.monotonic() + 60
    while native_stack.metric("chatstack_requests_finished_total", reason="cancelled") == before:
        assert time.monotonic() < deadline, "generation did not stop after the client cancelled"
        time.sleep(0.2)
    assert native_stack.metric_settles_at("chatstack_active_requests", 0) == 0
