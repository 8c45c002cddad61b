"""Sending one request's text deltas through a Triton decoupled response sender.

Streaming requests get one response per delta; non-streaming ones get the whole
reply in their single, final response. Between deltas the sender checks whether
the client cancelled (directly, or through the ensemble's cancel mark).
"""

from __future__ import annotations

import time
from typing import Iterator

from chatstack.backends.base import FinishReason
from chatstack.serving.cancel_marks import CancelMarks
from chatstack.serving.chat_service import ChatDelta, ChatService
from chatstack.serving.metrics import GenerateMetrics
from chatstack.serving.triton_io import bool_tensor, text_tensor


class DeltaSender:
    def __init__(self, pb_utils, service: ChatService, metrics: GenerateMetrics, marks: CancelMarks):
        self.pb_utils = pb_utils
        self.service = service
        self.metrics = metrics
        self.marks = marks

    def response(self, stream_key: str, text: str, finish_reason: str, blocked: bool):
        pb = self.pb_utils
        return pb.InferenceResponse(output_tensors=[
            text_tensor(pb, "text_output", text),
            text_tensor(pb, "finish_reason", finish_reason),
            bool_tensor(pb, "blocked", blocked),
            text_tensor(pb, "stream_key", stream_key),
        ])

    def send_all(self, sender, request_id: str, stream: bool, deltas: Iterator[ChatDelta], arrived: float) -> None:
        final_flag = self.pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        pieces, first = [], True
        for delta in deltas:
            if sender.is_cancelled() or self.marks.is_marked(request_id):
                self.service.cancel(request_id)
            if first and delta.text:
                self.metrics.ttft.observe(time.perf_counter() - arrived)
                first = False
            self.metrics.tokens.increment(delta.token_count)
            if delta.finish_reason is None:
                if stream:
                    sender.send(self.response(request_id, delta.text, "", delta.blocked))
                else:
                    pieces.append(delta.text)
                continue
            self.metrics.finish(delta.finish_reason)
            if delta.finish_reason is FinishReason.CANCELLED:
                sender.send(flags=final_flag)
                return
            text = delta.text if stream else "".join(pieces) + delta.text
            sender.send(self.response(request_id, text, delta.finish_reason.value, delta.blocked), flags=final_flag)
