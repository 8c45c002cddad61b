"""One long-lived gRPC stream to the `chat` ensemble, timing each request on it.

A load-test user keeps one channel and one bidirectional stream open and sends its
requests on it one after another, as a chat front end would; opening a channel per
request (as `ChatClient` does) would measure connection set-up instead of serving.
The ensemble is decoupled, so even `stream=False` requests go over this stream.
"""

from __future__ import annotations

import queue
import time
import uuid

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from chatstack.client import ChatOptions, _parse as parse_response, build_inputs
from chatstack.loadtest.measurement import ChatFailure, ChatMeasurement, FailureKind


class ChatStream:
    def __init__(self, url: str, model: str = "chat", timeout_s: float = 30.0):
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.url, self.model, self.timeout_s = url, model, timeout_s
        self._client: grpcclient.InferenceServerClient | None = None
        self._responses: queue.Queue = queue.Queue()

    def _open(self) -> grpcclient.InferenceServerClient:
        if self._client is None:
            self._responses = queue.Queue()
            responses = self._responses  # a reopened stream must not feed the old queue
            self._client = grpcclient.InferenceServerClient(self.url)
            self._client.start_stream(callback=lambda result, error: responses.put((result, error)))
        return self._client

    def close(self, cancel: bool = True) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            client.stop_stream(cancel_requests=cancel)
            client.close()

    def ask(self, text: str, options: ChatOptions = ChatOptions(), stream: bool = True) -> ChatMeasurement:
        """Send one request and wait for its final response (or the timeout)."""
        request_id = uuid.uuid4().hex
        start = time.perf_counter()
        deadline = start + self.timeout_s
        ttft, deltas, chars, finish = None, 0, 0, ""
        try:
            self._open().async_stream_infer(self.model, build_inputs(text, stream, options), request_id=request_id,
                                            enable_empty_final_response=True)
            while True:
                try:
                    result, error = self._responses.get(timeout=max(deadline - time.perf_counter(), 0.0))
                except queue.Empty:
                    self.close(cancel=True)  # drop the stream so a late reply cannot be taken for the next one
                    raise ChatFailure(FailureKind.TIMEOUT, f"no final response within {self.timeout_s:.0f} s") from None
                if error is not None:
                    self.close(cancel=True)
                    unreachable = error.status() == "StatusCode.UNAVAILABLE"
                    raise ChatFailure(FailureKind.TRANSPORT if unreachable else FailureKind.TRITON, str(error))
                if result.get_response().id != request_id:
                    continue
                reply, final = parse_response(result)
                if reply is not None and reply.text:
                    ttft = ttft if ttft is not None else time.perf_counter() - start
                    deltas, chars = deltas + 1, chars + len(reply.text)
                if reply is not None and reply.blocked:
                    raise ChatFailure(FailureKind.BLOCKED, reply.finish_reason or "input refused")
                if reply is not None and reply.finish_reason:
                    finish = reply.finish_reason
                if final:
                    return ChatMeasurement(time.perf_counter() - start, ttft, deltas, chars, finish)
        except InferenceServerException as exc:
            self.close(cancel=True)
            failure = ChatFailure(FailureKind.TRANSPORT, str(exc))
        except ChatFailure as exc:
            failure = exc
        return ChatMeasurement(time.perf_counter() - start, ttft, deltas, chars, finish, failure)
