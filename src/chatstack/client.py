"""A gRPC streaming client for the `chat` ensemble (tritonclient).

The ensemble is decoupled, so every request, streaming or not, goes over the
bidirectional gRPC stream; a non-streaming request receives one response.

    client = ChatClient("127.0.0.1:8001")
    for delta in client.stream("What is a tuple?", session_id="alice"):
        print(delta, end="", flush=True)
"""

from __future__ import annotations

import json
import queue
import time
import uuid
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


class ChatError(RuntimeError):
    """The server rejected or failed the request; the message is the server's."""


@dataclass(frozen=True)
class ChatOptions:
    """Request fields beyond the text; None leaves the server's default."""

    session_id: str | None = None
    system_prompt: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop_words: tuple[str, ...] = ()
    ignore_eos: bool | None = None
    tenant: str | None = None  # whose documents retrieval searches
    quote_bound: bool | None = None  # quote-bound decoding over the retrieved passages

    def request_fields(self) -> dict:
        """The fields a request sends, by input name (the ones left None are left out)."""
        fields = {name: getattr(self, name) for name in _SCALARS if getattr(self, name) is not None}
        if self.stop_words:
            fields["stop_words"] = list(self.stop_words)
        return fields


@dataclass
class ChatReply:
    text: str = ""
    finish_reason: str = ""
    blocked: bool = False
    response_id: str = ""
    citations: list[dict] = field(default_factory=list)  # [{n, source, section, score, chunk_id}]
    grounded: bool = False
    grounding_score: float = 0.0
    retrieval_status: str = ""
    time_to_first_token_s: float | None = None
    chunks: list[str] = field(default_factory=list)


_SCALARS = {
    "session_id": ("BYTES", np.object_),
    "system_prompt": ("BYTES", np.object_),
    "max_tokens": ("INT32", np.int32),
    "temperature": ("FP32", np.float32),
    "top_p": ("FP32", np.float32),
    "top_k": ("INT32", np.int32),
    "seed": ("UINT64", np.uint64),
    "ignore_eos": ("BOOL", np.bool_),
    "tenant": ("BYTES", np.object_),
    "quote_bound": ("BOOL", np.bool_),
}


def _tensor(name: str, datatype: str, array: np.ndarray) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def build_inputs(text: str | bytes, stream: bool, options: ChatOptions) -> list[grpcclient.InferInput]:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    inputs = [
        _tensor("text_input", "BYTES", np.array([[raw]], dtype=np.object_)),
        _tensor("stream", "BOOL", np.array([[stream]], dtype=np.bool_)),
    ]
    for name, value in options.request_fields().items():
        if name == "stop_words":
            inputs.append(_tensor(name, "BYTES", np.array([[w.encode("utf-8") for w in value]], dtype=np.object_)))
        else:
            datatype, dtype = _SCALARS[name]
            value = value.encode("utf-8") if isinstance(value, str) else value
            inputs.append(_tensor(name, datatype, np.array([[value]], dtype=dtype)))
    return inputs


class ChatClient:
    def __init__(self, url: str = "127.0.0.1:8001", model: str = "chat", timeout_s: float = 120.0):
        self.url = url
        self.model = model
        self.timeout_s = timeout_s

    def stream(self, text: str | bytes, options: ChatOptions = ChatOptions(), stream: bool = True) -> Iterator[ChatReply]:
        """Yield one ChatReply per server response; the last has `finish_reason` set."""
        client = grpcclient.InferenceServerClient(self.url)
        responses: "queue.Queue" = queue.Queue()
        client.start_stream(callback=lambda result, error: responses.put((result, error)))
        finished = False
        try:
            try:
                client.async_stream_infer(
                    self.model,
                    build_inputs(text, stream, options),
                    request_id=uuid.uuid4().hex,
                    enable_empty_final_response=True,
                )
            except InferenceServerException:
                pass  # the stream already failed; the callback queue holds the reason
            while True:
                try:
                    result, error = responses.get(timeout=self.timeout_s)
                except queue.Empty:
                    raise ChatError(f"no response from {self.model} within {self.timeout_s:.0f} s") from None
                if error is not None:
                    raise ChatError(str(error))
                reply, final = _parse(result)
                if reply is not None:
                    yield reply
                if final:
                    finished = True
                    return
        finally:
            # cancel only a request that is still running (the caller stopped reading early)
            client.stop_stream(cancel_requests=not finished)
            client.close()

    def complete(self, text: str | bytes, options: ChatOptions = ChatOptions(), stream: bool = True) -> ChatReply:
        """The whole reply, with time to first token measured on the client."""
        start = time.perf_counter()
        total = ChatReply()
        for part in self.stream(text, options, stream):
            if total.time_to_first_token_s is None:
                total.time_to_first_token_s = time.perf_counter() - start
            total.chunks.append(part.text)
            total.text += part.text
            total.finish_reason = part.finish_reason or total.finish_reason
            total.blocked = total.blocked or part.blocked
            total.response_id = part.response_id or total.response_id
            if part.finish_reason:
                total.citations, total.grounded = part.citations, part.grounded
                total.grounding_score, total.retrieval_status = part.grounding_score, part.retrieval_status
        return total

    def feedback(self, response_id: str, rating: int, correction: str | None = None) -> None:
        """Thumbs up (1) or down (-1) on an answer, optionally with a better answer."""
        inputs = [
            _tensor("response_id", "BYTES", np.array([[response_id.encode("utf-8")]], dtype=np.object_)),
            _tensor("rating", "INT32", np.array([[rating]], dtype=np.int32)),
        ]
        if correction is not None:
            inputs.append(_tensor("correction", "BYTES", np.array([[correction.encode("utf-8")]], dtype=np.object_)))
        client = grpcclient.InferenceServerClient(self.url)
        try:
            client.infer("feedback", inputs, client_timeout=self.timeout_s)
        except InferenceServerException as exc:
            raise ChatError(str(exc)) from None
        finally:
            client.close()


def _parse(result) -> tuple[ChatReply | None, bool]:
    response = result.get_response()
    final = response.parameters.get("triton_final_response")
    is_final = bool(final and final.bool_param)
    text = result.as_numpy("text_output")
    if text is None:
        return None, is_final
    finish = result.as_numpy("finish_reason")
    blocked = result.as_numpy("blocked")
    response_id = result.as_numpy("response_id")
    reply = ChatReply(
        text=text.reshape(-1)[0].decode("utf-8"),
        finish_reason=finish.reshape(-1)[0].decode("utf-8") if finish is not None else "",
        blocked=bool(blocked.reshape(-1)[0]) if blocked is not None else False,
        response_id=response_id.reshape(-1)[0].decode("ascii") if response_id is not None else "",
    )
    citations = _scalar(result, "citations")
    if citations:
        reply.citations = json.loads(citations.decode("utf-8"))
    reply.grounded = bool(_scalar(result, "grounded") or False)
    reply.grounding_score = float(_scalar(result, "grounding_score") or 0.0)
    status = _scalar(result, "retrieval_status")
    reply.retrieval_status = status.decode("utf-8") if status else ""
    return reply, is_final


def _scalar(result, name: str):
    array = result.as_numpy(name)
    return None if array is None else array.reshape(-1)[0]
