"""Triton adapter for the `preprocess` step (logic: chatstack.serving.preprocess)."""

import chatstack_site  # noqa: F401  (must come first: puts chatstack on sys.path)
import triton_python_backend_utils as pb_utils

from chatstack.rag.query import context_to_json
from chatstack.serving.preprocess import Preprocessor
from chatstack.serving.triton_io import deployment_from_args, request_tensors, respond_each, text_tensor
from chatstack.text.chat_template import messages_to_json

INPUTS = ("text_input", "session_id", "system_prompt", "max_tokens", "stream", "temperature", "top_p", "top_k",
          "seed", "stop_words", "ignore_eos", "min_p", "repetition_penalty", "presence_penalty",
          "frequency_penalty", "return_log_probs", "top_log_probs")


class TritonPythonModel:
    def initialize(self, args):
        self.preprocessor = Preprocessor(deployment_from_args(args))

    def execute(self, requests):
        return respond_each(pb_utils, requests, self._preprocess)

    def _preprocess(self, request):
        conversation = self.preprocessor.run(request_tensors(pb_utils, request, INPUTS))
        return [
            text_tensor(pb_utils, "messages", messages_to_json(conversation.messages)),
            text_tensor(pb_utils, "query", conversation.query),
            text_tensor(pb_utils, "retrieval_context", context_to_json(conversation.retrieval_context)),
        ]
