"""Raw gRPC helpers for integration tests that need inputs ChatClient would never send."""

from __future__ import annotations

import json
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


def to_json(messages: list[Message]) -> str:
    return json.dumps([m.__dict__ for m in messages])
