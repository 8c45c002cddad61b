"""min-p, penalties and logprobs through the real chat ensemble; bad values rejected by name."""

from __future__ import annotations

import json
import queue

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.integration.helpers import stream_error, tensor, text

pytestmark = pytest.mark.integration


def scalar(name: str, datatype: str, value) -> grpcclient.InferInput:
    dtypes = {"FP32": np.float32, "INT32": np.int32, "BOOL": np.bool_}
    return tensor(name, datatype, np.array([[value]], dtype=dtypes[datatype]))


PENALISED = [
    scalar("max_tokens", "INT32", 12), scalar("temperature", "FP32", 0.0), scalar("ignore_eos", "BOOL", True),
    scalar("min_p", "FP32", 0.05), scalar("repetition_penalty", "FP32", 1.3),
    scalar("presence_penalty", "FP32", 0.5), scalar("frequency_penalty", "FP32", 0.2),
    scalar("return_log_probs", "BOOL", True), scalar("top_log_probs", "INT32", 3),
]


def chat(url: str, question: str, extra: list, stream: bool) -> tuple[str, list[dict], str]:
    """(text, every output_log_probs entry in order, finish_reason) of one request."""
    client = grpcclient.InferenceServerClient(url)
    responses: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: responses.put((result, error)))
    inputs = [text("text_input", question), scalar("stream", "BOOL", stream), *extra]
    pieces, logprobs = [], []
    try:
        client.async_stream_infer("chat", inputs, enable_empty_final_response=True)
        while True:
            result, error = responses.get(timeout=120)
            assert error is None, error
            if result.as_numpy("text_output") is not None:
                pieces.append(result.as_numpy("text_output").reshape(-1)[0].decode())
                logprobs.extend(json.loads(result.as_numpy("output_log_probs").reshape(-1)[0].decode()))
                finish = result.as_numpy("finish_reason").reshape(-1)[0].decode()
            final = result.get_response().parameters.get("triton_final_response")
            if final is not None and final.bool_param:
                return "".join(pieces), logprobs, finish
    finally:
        client.stop_stream()
        client.close()


def test_penalties_and_logprobs_stream_and_match_the_non_streamed_reply(stack):
    streamed, streamed_lp, finish = chat(stack.grpc_url, "What is a tuple?", PENALISED, stream=True)
    whole, whole_lp, _ = chat(stack.grpc_url, "What is a tuple?", PENALISED, stream=False)
    assert finish == "length" and streamed and streamed == whole
    assert len(streamed_lp) == 12 and streamed_lp == whole_lp  # one entry per generated token
    for entry in streamed_lp:
        assert entry["logprob"] <= 0 and len(entry["top_logprobs"]) == 3
        tops = [t["logprob"] for t in entry["top_logprobs"]]
        assert tops == sorted(tops, reverse=True) and entry["logprob"] <= tops[0]
    plain, plain_lp, _ = chat(stack.grpc_url, "What is a tuple?", PENALISED[:3], stream=True)
    assert plain_lp == [] and plain != streamed  # no logprobs unless asked; the penalties changed the reply


@pytest.mark.parametrize(("inputs", "field"), [
    ([scalar("min_p", "FP32", 1.5)], "min_p"),
    ([scalar("repetition_penalty", "FP32", 0.0)], "repetition_penalty"),
    ([scalar("presence_penalty", "FP32", 3.0)], "presence_penalty"),
    ([scalar("frequency_penalty", "FP32", float("nan"))], "frequency_penalty"),
    ([scalar("return_log_probs", "BOOL", True), scalar("top_log_probs", "INT32", 50)], "top_log_probs"),
    ([scalar("top_log_probs", "INT32", 2)], "top_log_probs"),
], ids=["min-p", "repetition", "presence", "frequency-nan", "too-many-top", "top-without-return"])
def test_bad_sampling_values_are_rejected_naming_the_field(stack, inputs, field):
    error = stream_error(stack.grpc_url, [text("text_input", "hi"), *inputs])
    assert error is not None and f"{field} " in error, error  # a ValueError in preprocess: INVALID_ARG
