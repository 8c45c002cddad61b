"""Helpers shared by the python-backend adapters in `model_repository/*/1/model.py`.

`pb_utils` (triton_python_backend_utils) exists only inside the Triton stub, so
it is passed in rather than imported here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from chatstack.config import DeploymentConfig, load_resolved_json


def deployment_from_args(args: dict) -> DeploymentConfig:
    """The deployment config named by the model's `deployment_config` parameter."""
    parameters = json.loads(args["model_config"])["parameters"]
    return load_resolved_json(Path(parameters["deployment_config"]["string_value"]))


def request_tensors(pb_utils, request, names: tuple[str, ...]) -> dict[str, np.ndarray | None]:
    tensors = {}
    for name in names:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        tensors[name] = None if tensor is None else tensor.as_numpy()
    return tensors


def text_tensor(pb_utils, name: str, text: str):
    return pb_utils.Tensor(name, np.array([[text.encode("utf-8")]], dtype=np.object_))


def bool_tensor(pb_utils, name: str, value: bool):
    return pb_utils.Tensor(name, np.array([[value]], dtype=np.bool_))


def error_response(pb_utils, exc: Exception):
    """ValueError is the caller's fault (INVALID_ARG); anything else is INTERNAL."""
    code = pb_utils.TritonError.INVALID_ARG if isinstance(exc, ValueError) else pb_utils.TritonError.INTERNAL
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc), code))


def respond_each(pb_utils, requests, handle) -> list:
    """One response per request: `handle(request)` returns output tensors; ValueError → INVALID_ARG."""
    responses = []
    for request in requests:
        try:
            responses.append(pb_utils.InferenceResponse(output_tensors=handle(request)))
        except ValueError as exc:
            responses.append(error_response(pb_utils, exc))
    return responses
