"""Triton adapter for the decoupled `generate` step (logic: chatstack.serving.chat_service).

Each request is served on a worker thread: the first response goes out as soon as
the first text delta exists; a cancelled client request stops its generation.
"""

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import chatstack_site  # noqa: F401  (must come first: puts chatstack on sys.path)
import triton_python_backend_utils as pb_utils

from chatstack.backends.base import FinishReason
from chatstack.serving.chat_request import parse_chat_request
from chatstack.serving.cancel_marks import CancelMarks, default_marks_dir
from chatstack.serving.chat_service import ChatService
from chatstack.serving.delta_sender import DeltaSender
from chatstack.serving.metrics import GenerateMetrics
from chatstack.safety.metrics import TritonSafetyCounters
from chatstack.serving.triton_io import deployment_from_args, error_response, request_tensors

INPUTS = ("messages", "input_blocked", "input_reason", "input_refusal", "redacted_query", "passages", "retrieval_status",
          "session_id",
          "max_tokens", "stream", "temperature", "top_p", "top_k", "seed", "stop_words", "ignore_eos",
          "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty", "return_log_probs",
          "top_log_probs", "quote_bound")


class TritonPythonModel:
    def initialize(self, args):
        self.cfg = deployment_from_args(args)
        stub_lock = threading.Lock()  # every stub call from a worker thread takes it (docs/decisions/0004)
        self.metrics = GenerateMetrics(pb_utils, args["model_name"], stub_lock)
        self.service = ChatService.from_config(self.cfg, TritonSafetyCounters(pb_utils, args["model_name"], stub_lock))
        self.marks = CancelMarks(self.cfg.serving.cancel_dir or default_marks_dir())
        self.sender = DeltaSender(pb_utils, self.service, self.metrics, self.marks)
        self.workers = ThreadPoolExecutor(max_workers=256, thread_name_prefix="generate")

    def execute(self, requests):
        # Inputs are copied here: their shared memory is not the worker's to read after execute returns.
        for request in requests:
            tensors = {k: None if v is None else v.copy() for k, v in request_tensors(pb_utils, request, INPUTS).items()}
            self.workers.submit(self._serve_logged, request.get_response_sender(), tensors, time.perf_counter())
        return None

    def _serve_logged(self, sender, tensors, arrived):
        try:
            self._serve(sender, tensors, arrived)
        except Exception as exc:  # a worker thread must never die silently or leave the client waiting
            pb_utils.Logger.log_error(f"generate: request failed: {type(exc).__name__}: {exc}")
            try:
                self.sender.send(sender, error_response(pb_utils, RuntimeError(str(exc))), final=True)
            except Exception:
                pass  # the final response had already been sent

    def _serve(self, sender, tensors, arrived):
        request_id = uuid.uuid4().hex  # also the stream key that postprocess marks on cancellation
        try:
            chat = parse_chat_request(tensors, self.cfg)
            deltas = self.service.start(request_id, chat)
        except Exception as exc:
            self.metrics.rejected()
            self.sender.send(sender, error_response(pb_utils, exc), final=True)
            return
        self.metrics.active(1)
        try:
            self.sender.send_all(sender, request_id, chat, deltas, arrived)
        except Exception as exc:
            self.service.cancel(request_id)
            self.metrics.finish(FinishReason.ERROR)
            self.sender.send(sender, error_response(pb_utils, exc), final=True)
        finally:
            self.metrics.active(-1)
            self.marks.clear(request_id)

    def finalize(self):
        self.workers.shutdown(wait=False, cancel_futures=True)
        self.service.backend.shutdown()
