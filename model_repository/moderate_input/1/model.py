"""Triton adapter for the `moderate_input` step (logic: chatstack.safety.moderator)."""

import chatstack_site  # noqa: F401  (must come first: puts chatstack on sys.path)
import triton_python_backend_utils as pb_utils

from chatstack.safety.metrics import TritonSafetyCounters
from chatstack.safety.moderator import Moderator
from chatstack.serving import fields
from chatstack.serving.triton_io import (bool_tensor, deployment_from_args, request_tensors, respond_each,
                                         text_tensor)


class TritonPythonModel:
    def initialize(self, args):
        safety = deployment_from_args(args).safety
        counters = TritonSafetyCounters(pb_utils, args["model_name"])
        self.moderator = Moderator.from_config(safety, counters) if safety.input_enabled else None

    def execute(self, requests):
        return respond_each(pb_utils, requests, self._screen)

    def _screen(self, request):
        query = fields.required_text(request_tensors(pb_utils, request, ("query",)), "query")
        if self.moderator is None:
            return self._outputs(False, "", "", query)
        result = self.moderator.check_input(query, request.request_id(), field="query")
        return self._outputs(result.blocked, result.reason, result.message, result.text)

    @staticmethod
    def _outputs(blocked: bool, reason: str, refusal: str, redacted: str):
        return [
            bool_tensor(pb_utils, "input_blocked", blocked),
            text_tensor(pb_utils, "input_reason", reason),
            text_tensor(pb_utils, "input_refusal", refusal),
            text_tensor(pb_utils, "redacted_query", redacted),
        ]
