"""Triton adapter for the decoupled `generate` step (logic: chatstack.serving.chat_service).

Each request is served on a worker thread: the first response goes out as soon as
the first text delta exists; a cancelled client request stops its generation.
"""

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import chatstack_site  # noqa: F401  (must come first: puts chatstack on sys.path)
import triton_python_backend_utils as pb_utils

from chatstack.backends.base import FinishReason
from chatstack.serving.chat_request import parse_chat_request
from chatstack.serving.cancel_marks import CancelMarks, default_marks_dir
from chatstack.serving.chat_service import ChatService
from chatstack.serving.metrics import GenerateMetrics
from chatstack.serving.triton_io import bool_tensor, deployment_from_args, error_response, request_tensors, text_tensor

INPUTS = ("messages", "input_blocked", "input_reason", "passages", "session_id", "max_tokens", "stream",
          "temperature", "top_p", "top_k", "seed", "stop_words", "ignore_eos")
FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel:
    def initialize(self, args):
        self.cfg = deployment_from_args(args)
        self.service = ChatService.from_config(self.cfg)
        self.metrics = GenerateMetrics(pb_utils, args["model_name"])
        self.marks = CancelMarks(self.cfg.serving.cancel_dir or default_marks_dir())
        self.workers = ThreadPoolExecutor(max_workers=256, thread_name_prefix="generate")

    def execute(self, requests):
        for request in requests:
            self.workers.submit(self._serve_logged, request, time.perf_counter())
        return None

    def _serve_logged(self, request, arrived):
        try:
            self._serve(request, arrived)
        except Exception as exc:  # a worker thread must never die silently or leave the client waiting
            pb_utils.Logger.log_error(f"generate: request failed: {type(exc).__name__}: {exc}")
            try:
                request.get_response_sender().send(error_response(pb_utils, RuntimeError(str(exc))), flags=FINAL)
            except Exception:
                pass  # the final response had already been sent

    def _serve(self, request, arrived):
        sender = request.get_response_sender()
        request_id = uuid.uuid4().hex  # also the stream key that postprocess marks on cancellation
        try:
            chat = parse_chat_request(request_tensors(pb_utils, request, INPUTS), self.cfg)
            deltas = self.service.start(request_id, chat)
        except Exception as exc:
            self.metrics.rejected.increment(1)
            sender.send(error_response(pb_utils, exc), flags=FINAL)
            return
        self.metrics.active.increment(1)
        try:
            self._send_deltas(sender, request_id, chat.stream, deltas, arrived)
        except Exception as exc:
            self.service.cancel(request_id)
            self.metrics.finish(FinishReason.ERROR)
            sender.send(error_response(pb_utils, exc), flags=FINAL)
        finally:
            self.metrics.active.increment(-1)
            self.marks.clear(request_id)

    def _send_deltas(self, sender, request_id, stream, deltas, arrived):
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
                    sender.send(self._response(request_id, delta.text, "", delta.blocked))
                else:
                    pieces.append(delta.text)
                continue
            self.metrics.finish(delta.finish_reason)
            if delta.finish_reason is FinishReason.CANCELLED:
                sender.send(flags=FINAL)
                return
            text = delta.text if stream else "".join(pieces) + delta.text
            sender.send(self._response(request_id, text, delta.finish_reason.value, delta.blocked), flags=FINAL)

    def _response(self, request_id, text, finish_reason, blocked):
        return pb_utils.InferenceResponse(output_tensors=[
            text_tensor(pb_utils, "text_output", text),
            text_tensor(pb_utils, "finish_reason", finish_reason),
            bool_tensor(pb_utils, "blocked", blocked),
            text_tensor(pb_utils, "stream_key", request_id),
        ])

    def finalize(self):
        self.workers.shutdown(wait=False, cancel_futures=True)
        self.service.backend.shutdown()
