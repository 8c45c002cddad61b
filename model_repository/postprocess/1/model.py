"""Triton adapter for the `postprocess` step: pass each delta on; turn a cancelled
ensemble request into a cancel mark for `generate` (chatstack.serving.cancel_marks)."""

import chatstack_site  # noqa: F401  (must come first: puts chatstack on sys.path)
import triton_python_backend_utils as pb_utils

from chatstack.serving.cancel_marks import CancelMarks, default_marks_dir
from chatstack.serving.triton_io import deployment_from_args

PASSED_ON = (("text", "text_output"), ("finish_reason_in", "finish_reason"), ("blocked_in", "blocked"),
             ("stream_key", "response_id"),  # the key that names the answer for feedback
             ("citations_in", "citations"), ("grounded_in", "grounded"), ("grounding_score_in", "grounding_score"),
             ("retrieval_status_in", "retrieval_status"), ("output_log_probs_in", "output_log_probs"))


class TritonPythonModel:
    def initialize(self, args):
        cfg = deployment_from_args(args)
        self.marks = CancelMarks(cfg.serving.cancel_dir or default_marks_dir())

    def execute(self, requests):
        return [self._one(request) for request in requests]

    def _one(self, request):
        if request.is_cancelled():
            key = pb_utils.get_input_tensor_by_name(request, "stream_key").as_numpy().reshape(-1)[0]
            self.marks.mark(key.decode("ascii"))
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError("the client cancelled the request", pb_utils.TritonError.CANCELLED)
            )
        tensors = [
            pb_utils.Tensor(out, pb_utils.get_input_tensor_by_name(request, name).as_numpy())
            for name, out in PASSED_ON
        ]
        return pb_utils.InferenceResponse(output_tensors=tensors)
