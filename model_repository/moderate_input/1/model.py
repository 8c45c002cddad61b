"""Triton adapter for the `moderate_input` step (logic: chatstack.safety.rules)."""

import chatstack_site  # noqa: F401  (must come first: puts chatstack on sys.path)
import triton_python_backend_utils as pb_utils

from chatstack.safety.rules import screen_text
from chatstack.serving import fields
from chatstack.serving.triton_io import bool_tensor, request_tensors, respond_each, text_tensor


class TritonPythonModel:
    def execute(self, requests):
        return respond_each(pb_utils, requests, self._screen)

    def _screen(self, request):
        verdict = screen_text(fields.required_text(request_tensors(pb_utils, request, ("query",)), "query"))
        return [bool_tensor(pb_utils, "input_blocked", verdict.blocked), text_tensor(pb_utils, "input_reason", verdict.reason)]
