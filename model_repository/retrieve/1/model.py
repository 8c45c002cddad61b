"""Triton adapter for the `retrieve` step (logic: chatstack.rag.retriever)."""

import chatstack_site  # noqa: F401  (must come first: puts chatstack on sys.path)
import triton_python_backend_utils as pb_utils

from chatstack.rag.retriever import EmptyRetriever, passages_to_json
from chatstack.serving import fields
from chatstack.serving.triton_io import request_tensors, respond_each, text_tensor

TOP_K = 4


class TritonPythonModel:
    def initialize(self, args):
        self.retriever = EmptyRetriever()

    def execute(self, requests):
        return respond_each(pb_utils, requests, self._retrieve)

    def _retrieve(self, request):
        query = fields.required_text(request_tensors(pb_utils, request, ("query",)), "query")
        return [text_tensor(pb_utils, "passages", passages_to_json(self.retriever.search(query, TOP_K)))]
