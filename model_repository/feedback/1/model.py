"""Triton adapter for `feedback` (logic: chatstack.feedback.store)."""

import chatstack_site  # noqa: F401  (must come first: puts chatstack on sys.path)
import triton_python_backend_utils as pb_utils

from chatstack.feedback.store import FeedbackStore
from chatstack.serving import fields
from chatstack.serving.triton_io import bool_tensor, deployment_from_args, request_tensors, respond_each

INPUTS = ("response_id", "rating", "correction")


class TritonPythonModel:
    def initialize(self, args):
        self.store = FeedbackStore(deployment_from_args(args).sessions.db_path)

    def execute(self, requests):
        return respond_each(pb_utils, requests, self._record)

    def _record(self, request):
        tensors = request_tensors(pb_utils, request, INPUTS)
        rating = fields.optional_int(tensors, "rating", -1, 1)
        if rating is None:
            raise ValueError("rating is required")
        self.store.record_feedback(
            fields.required_text(tensors, "response_id"), rating, fields.optional_text(tensors, "correction")
        )
        return [bool_tensor(pb_utils, "accepted", True)]
