"""The chat ensemble served by the native engine: same answers as the HF baseline, and cancellation."""

from __future__ import annotations

import queue
import time

import pytest
import tritonclient.grpc as grpcclient

from chatstack.client import ChatClient, ChatOptions, build_inputs
from tests.integration.conftest import start_stack

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
    client = grpcclient.InferenceServerClient(native_stack.grpc_url)
    responses: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: responses.put((result, error)))
    options = ChatOptions(max_tokens=16, temperature=0.0, ignore_eos=True)
    for i, question in enumerate(QUESTIONS * 2):
        client.async_stream_infer("chat", build_inputs(question, True, options), request_id=str(i),
                                  enable_empty_final_response=True)
    finished = set()
    deadline = time.monotonic() + 180
    while len(finished) < len(QUESTIONS) * 2:
        result, error = responses.get(timeout=max(1, deadline - time.monotonic()))
        assert error is None, error
        final = result.get_response().parameters.get("triton_final_response")
        if final is not None and final.bool_param:
            finished.add(result.get_response().id)
    client.stop_stream()
    client.close()
    assert finished == {str(i) for i in range(len(QUESTIONS) * 2)}


def test_cancel_on_the_native_engine_stops_generation(native_stack):
    before = native_stack.metric("chatstack_requests_finished_total", reason="cancelled")
    client = grpcclient.InferenceServerClient(native_stack.grpc_url)
    responses: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: responses.put((result, error)))
    options = ChatOptions(max_tokens=400, ignore_eos=True, temperature=0.0)
    client.async_stream_infer("chat", build_inputs("Tell me a long story.", True, options), enable_empty_final_response=True)
    for _ in range(3):
        assert responses.get(timeout=120)[1] is None
    client.stop_stream(cancel_requests=True)
    client.close()
    deadline = time.monotonic() + 60
    while native_stack.metric("chatstack_requests_finished_total", reason="cancelled") == before:
        assert time.monotonic() < deadline, "generation did not stop after the client cancelled"
        time.sleep(0.2)
    assert native_stack.metric("chatstack_active_requests") == 0
