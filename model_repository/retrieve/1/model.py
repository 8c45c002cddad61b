"""Triton adapter for the `retrieve` step (logic: chatstack.rag.service)."""

import chatstack_site  # noqa: F401  (must come first: puts chatstack on sys.path)
import triton_python_backend_utils as pb_utils

from chatstack.rag.query import context_from_json
from chatstack.rag.retriever import passages_to_json
from chatstack.rag.service import RetrievalService, RetrievalStatus
from chatstack.serving import fields
from chatstack.serving.triton_io import deployment_from_args, request_tensors, respond_each, text_tensor


class TritonPythonModel:
    def initialize(self, args):
        self.service = RetrievalService(deployment_from_args(args).retrieval)
        self.service.warm_up()
        family = pb_utils.MetricFamily
        # the family must outlive its metrics, so it is kept on the object
        self.family = family("chatstack_retrievals_total", "Retrieve steps, by status", family.COUNTER)
        self.counts = {s: self.family.Metric({"model": args["model_name"], "status": s.value}) for s in RetrievalStatus}

    def execute(self, requests):
        return respond_each(pb_utils, requests, self._retrieve)

    def _retrieve(self, request):
        tensors = request_tensors(pb_utils, request, ("query", "query_context", "tenant"))
        result = self.service.retrieve(fields.required_text(tensors, "query"), fields.optional_text(tensors, "tenant"),
                                       context_from_json(fields.optional_text(tensors, "query_context")))
        self.counts[result.status].increment(1)
        if result.status is RetrievalStatus.DEGRADED:
            pb_utils.Logger.log_warn(f"retrieve: degraded, answering without passages: {result.detail}")
        return [text_tensor(pb_utils, "passages", passages_to_json(result.passages)),
                text_tensor(pb_utils, "retrieval_status", result.status.value)]

    def finalize(self):
        self.service.close()
