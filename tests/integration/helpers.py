"""Raw gRPC helpers for integration tests that need inputs ChatClient would never send."""

from __future__ import annotations

import queue

import numpy as np
import tritonclient.grpc as grpcclient

from chatstack.text.chat_template import Message, messages_from_json


def tensor(name: str, datatype: str, array: np.ndarray) -> grpcclient.InferInput:
    t = grpcclient.InferInput(name, list(array.shape), datatype)
    t.set_data_from_numpy(array)
    return t


def text(name: str, value: bytes | str) -> grpcclient.InferInput:
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return tensor(name, "BYTES", np.array([[raw]], dtype=np.object_))


def stream_error(url: str, inputs: list, model: str = "chat", timeout_s: float = 60) -> str | None:
    """Send one request on a gRPC stream; return the error message, or None if it succeeded."""
    client = grpcclient.InferenceServerClient(url)
    responses: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: responses.put((result, error)))
    try:
        client.async_stream_infer(model, inputs, enable_empty_final_response=True)
        while True:
            result, error = responses.get(timeout=timeout_s)
            if error is not None:
                return str(error)
            final = result.get_response().parameters.get("triton_final_response")
            if final is not None and final.bool_param:
                return None
    finally:
        client.stop_stream(cancel_requests=True)
        client.close()


def preprocess_messages(url: str, user_text: str, session_id: str) -> list[Message]:
    """Call the (non-decoupled) preprocess step directly: the conversation it would send on."""
    client = grpcclient.InferenceServerClient(url)
    try:
        result = client.infer("preprocess", [text("text_input", user_text), text("session_id", session_id)])
    finally:
        client.close()
    return messages_from_json(result.as_numpy("messages").reshape(-1)[0].decode("utf-8"))


def stream_many(url: str, questions: list[str], options, timeout_s: float = 180) -> set[str]:
    """Send every question at once on one gRPC stream; return the ids whose final response arrived."""
    from chatstack.client import build_inputs

    client = grpcclient.InferenceServerClient(url)
    responses: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: responses.put((result, error)))
    for i, question in enumerate(questions):
        client.async_stream_infer("chat", build_inputs(question, True, options), request_id=str(i),
                                  enable_empty_final_response=True)
    finished: set[str] = set()
    try:
        while len(finished) < len(questions):
            result, error = responses.get(timeout=timeout_s)
            assert error is None, error
            final = result.get_response().parameters.get("triton_final_response")
            if final is not None and final.bool_param:
                finished.add(result.get_response().id)
    finally:
        client.stop_stream()
        client.close()
    return finished


def start_then_disconnect(url: str, options, deltas: int = 3) -> None:
    """Start a long streamed answer, read a few deltas, then close the stream cancelling it."""
    from chatstack.client import build_inputs

    client = grpcclient.InferenceServerClient(url)
    responses: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: responses.put((result, error)))
    client.async_stream_infer("chat", build_inputs("Tell me a long story.", True, options),
                              enable_empty_final_response=True)
    for _ in range(deltas):
        assert responses.get(timeout=120)[1] is None
    client.stop_stream(cancel_requests=True)
    client.close()
