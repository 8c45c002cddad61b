"""Triton adapter for the `retrieve` step (logic: chatstack.rag.retriever)."""

import chatstack_site  # noqa: F401  (must come first: puts chatstack on sys.path)
import triton_python_backend_utils as pb_utils

from chatstack.rag.retriever import EmptyRetriever, passages_to_json
from chatstack.serving import fields
from chatstack.serving.triton_io import error_response, request_tensors, text_tensor

TOP_K = 4


class TritonPythonModel:
    def initialize(self, args):
        self.retriever = EmptyRetriever()

    def execute(self, requests):
        return [self._one(request) for request in requests]

    def _one(self, request):
        try:
            query = fields.required_text(request_tensors(pb_utils, request, ("query",)), "query")
        except ValueError as exc:
            return error_response(pb_utils, exc)
        passages = self.retriever.search(query, TOP_K)
        return pb_utils.InferenceResponse(output_tensors=[text_tensor(pb_utils, "passages", passages_to_json(passages))])
