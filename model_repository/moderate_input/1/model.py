"""Triton adapter for the `moderate_input` step (logic: chatstack.safety.rules)."""

import chatstack_site  # noqa: F401  (must come first: puts chatstack on sys.path)
import triton_python_backend_utils as pb_utils

from chatstack.safety.rules import screen_text
from chatstack.serving import fields
from chatstack.serving.triton_io import bool_tensor, error_response, request_tensors, text_tensor


class TritonPythonModel:
    def execute(self, requests):
        return [self._one(request) for request in requests]

    def _one(self, request):
        try:
            query = fields.required_text(request_tensors(pb_utils, request, ("query",)), "query")
        except ValueError as exc:
            return error_response(pb_utils, exc)
        verdict = screen_text(query)
        return pb_utils.InferenceResponse(
            output_tensors=[
                bool_tensor(pb_utils, "input_blocked", verdict.blocked),
                text_tensor(pb_utils, "input_reason", verdict.reason),
            ]
        )
