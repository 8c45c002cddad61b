"""Sending one request's text deltas through a Triton decoupled response sender.

Streaming requests get one response per delta; non-streaming ones get the whole
reply in their single, final response. Between deltas the sender checks whether
the client cancelled (directly, or through the ensemble's cancel mark).

Every call into the python-backend stub from a worker thread (`send`, `is_cancelled`,
metric updates) goes through one lock per model instance: measured, 32 worker threads calling them
concurrently crash tritonserver 2.51 (SIGSEGV in libtriton_python.so).
`is_cancelled` is also a round trip to the server, so it is asked at most every
`CANCEL_POLL_S`; the ensemble's cancel mark is a file check and is read every delta.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from typing import Iterator

from chatstack.backends.base import FinishReason
from chatstack.serving.cancel_marks import CancelMarks
from chatstack.serving.chat_request import ChatRequest
from chatstack.serving.chat_service import ChatDelta, ChatService
from chatstack.serving.metrics import GenerateMetrics
from chatstack.serving.sampling_fields import merge_logprobs
from chatstack.serving.triton_io import bool_tensor, text_tensor


CANCEL_POLL_S = 0.05


class DeltaSender:
    def __init__(self, pb_utils, service: ChatService, metrics: GenerateMetrics, marks: CancelMarks):
        self.pb_utils = pb_utils
        self.service = service
        self.metrics = metrics
        self.marks = marks
        self._sender_lock = metrics.lock  # one stub lock for responses and metrics

    def send(self, sender, response=None, final: bool = False) -> None:
        flags = self.pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if final else 0
        with self._sender_lock:
            if response is None:
                sender.send(flags=flags)
            else:
                sender.send(response, flags=flags)

    def client_cancelled(self, sender) -> bool:
        with self._sender_lock:
            return sender.is_cancelled()

    def response(self, stream_key: str, text: str, delta: ChatDelta, retrieval_status: str, final: bool):
        """Every response carries every output; citations and grounding are filled on the final one."""
        pb = self.pb_utils
        return pb.InferenceResponse(output_tensors=[
            text_tensor(pb, "text_output", text),
            text_tensor(pb, "finish_reason", delta.finish_reason.value if final else ""),
            bool_tensor(pb, "blocked", delta.blocked),
            text_tensor(pb, "stream_key", stream_key),
            text_tensor(pb, "citations", delta.citations if final else "[]"),
            bool_tensor(pb, "grounded", delta.grounded and final),
            pb.Tensor("grounding_score", np.array([[delta.grounding_score if final else 0.0]], dtype=np.float32)),
            text_tensor(pb, "retrieval_status_out", retrieval_status),
            text_tensor(pb, "output_log_probs", delta.logprobs),
        ])

    def send_all(self, sender, request_id: str, chat: ChatRequest, deltas: Iterator[ChatDelta], arrived: float) -> None:
        stream = chat.stream
        pieces, first, polled = [], True, time.perf_counter()
        held_logprobs: list[str] = []  # non-streaming: every delta's logprobs go in the one response
        for delta in deltas:
            cancelled = self.marks.is_marked(request_id)
            if not cancelled and time.perf_counter() - polled > CANCEL_POLL_S:
                cancelled, polled = self.client_cancelled(sender), time.perf_counter()
            if cancelled:
                self.service.cancel(request_id)
            if first and delta.text:
                self.metrics.first_token(time.perf_counter() - arrived)
                first = False
            self.metrics.tokens(delta.token_count)
            if delta.finish_reason is None:
                if stream:
                    self.send(sender, self.response(request_id, delta.text, delta, chat.retrieval_status, final=False))
                else:
                    pieces.append(delta.text)
                    held_logprobs.append(delta.logprobs)
                continue
            self.metrics.finish(delta.finish_reason)
            if delta.finish_reason is FinishReason.CANCELLED:
                self.send(sender, final=True)
                return
            if chat.passages and not delta.grounded and delta.finish_reason is not FinishReason.CONTENT_FILTER:
                self.metrics.ungrounded()
            text = delta.text if stream else "".join(pieces) + delta.text
            if not stream and held_logprobs:
                delta = dataclasses.replace(delta, logprobs=merge_logprobs([*held_logprobs, delta.logprobs]))
            self.send(sender, self.response(request_id, text, delta, chat.retrieval_status, final=True), final=True)
