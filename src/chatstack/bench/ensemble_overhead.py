"""Ensemble overhead: time to first token through `chat` minus the backend's own.

Three paths answer the same conversation with the same greedy settings, one
request at a time, interleaved so machine noise hits all of them alike:
  backend   — GenerationBackend in this process (submit → first token id)
  generate  — the `generate` model alone over a gRPC stream
  chat      — the full ensemble (preprocess, moderate_input, retrieve, generate, postprocess)
"""

from __future__ import annotations

import json
import queue
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from chatstack.backends.base import GenerationRequest, SamplingParams
from chatstack.bench.stats import TABLE_HEADER, Summary
from chatstack.client import ChatClient, ChatOptions
from chatstack.config import DeploymentConfig
from chatstack.serving.chat_request import ChatRequest
from chatstack.serving.chat_service import ChatService
from chatstack.text.chat_template import Message, messages_to_json

QUESTIONS = ["What is a list comprehension?", "Explain the with statement.", "What does yield do?",
             "How do I open a file?", "What is a decorator?"]


@dataclass(frozen=True)
class OverheadResult:
    backend: Summary
    generate: Summary
    chat: Summary

    def report(self) -> str:
        lines = [TABLE_HEADER, self.backend.row("backend (in-process)"), self.generate.row("generate model (gRPC)"),
                 self.chat.row("chat ensemble (gRPC)")]
        lines.append("")
        lines.append(f"ensemble overhead, p50: chat − backend = {self.chat.p50_ms - self.backend.p50_ms:.1f} ms; "
                     f"chat − generate = {self.chat.p50_ms - self.generate.p50_ms:.1f} ms; "
                     f"generate − backend = {self.generate.p50_ms - self.backend.p50_ms:.1f} ms")
        lines.append(f"ratio chat / backend TTFT (p50): {self.chat.p50_ms / self.backend.p50_ms:.2f}x")
        return "\n".join(lines)


def _messages(cfg: DeploymentConfig, question: str) -> list[Message]:
    return [Message("system", cfg.sessions.system_prompt), Message("user", question)]


def backend_ttft(service: ChatService, cfg: DeploymentConfig, question: str, max_tokens: int) -> float:
    request = ChatRequest(_messages(cfg, question), [], False, "", None,
                          SamplingParams(max_tokens=max_tokens, temperature=0.0), (), True)
    ids = service.prompt_ids(request)
    start = time.perf_counter()
    request_id = f"bench-{time.monotonic_ns()}"
    service.backend.submit(GenerationRequest(request_id, ids, request.sampling, service.stop_token_ids))
    first = None
    for output in service.backend.stream(request_id):
        if first is None:
            first = time.perf_counter() - start
    return first


def generate_ttft(url: str, cfg: DeploymentConfig, question: str, max_tokens: int) -> float:
    def tensor(name, datatype, value, dtype):
        t = grpcclient.InferInput(name, [1, 1], datatype)
        t.set_data_from_numpy(np.array([[value]], dtype=dtype))
        return t

    inputs = [
        tensor("messages", "BYTES", messages_to_json(_messages(cfg, question)).encode(), np.object_),
        tensor("input_blocked", "BOOL", False, np.bool_),
        tensor("input_reason", "BYTES", b"", np.object_),
        tensor("passages", "BYTES", b"[]", np.object_),
        tensor("max_tokens", "INT32", max_tokens, np.int32),
        tensor("temperature", "FP32", 0.0, np.float32),
        tensor("stream", "BOOL", True, np.bool_),
    ]
    client = grpcclient.InferenceServerClient(url)
    responses: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: responses.put((result, error)))
    start = time.perf_counter()
    client.async_stream_infer("generate", inputs, enable_empty_final_response=True)
    first = None
    try:
        while True:
            result, error = responses.get(timeout=120)
            if error is not None:
                raise RuntimeError(str(error))
            if first is None:
                first = time.perf_counter() - start
            final = result.get_response().parameters.get("triton_final_response")
            if final is not None and final.bool_param:
                return first
    finally:
        client.stop_stream()
        client.close()


def chat_ttft(url: str, question: str, max_tokens: int) -> float:
    reply = ChatClient(url).complete(question, ChatOptions(max_tokens=max_tokens, temperature=0.0))
    return reply.time_to_first_token_s


def run(cfg: DeploymentConfig, url: str, iterations: int, max_tokens: int = 8) -> OverheadResult:
    service = ChatService.from_config(cfg)
    samples: dict[str, list[float]] = {"backend": [], "generate": [], "chat": []}
    for i in range(iterations + 2):  # the first two rounds warm every path up and are dropped
        question = QUESTIONS[i % len(QUESTIONS)]
        measured = {
            "backend": backend_ttft(service, cfg, question, max_tokens),
            "generate": generate_ttft(url, cfg, question, max_tokens),
            "chat": chat_ttft(url, question, max_tokens),
        }
        if i >= 2:
            for name, value in measured.items():
                samples[name].append(value)
    service.backend.shutdown()
    return OverheadResult(*(Summary.of(samples[n]) for n in ("backend", "generate", "chat")))


def to_json(result: OverheadResult) -> str:
    return json.dumps({k: v.__dict__ for k, v in result.__dict__.items()}, indent=2)


def main(cfg: DeploymentConfig, out_dir: Path, iterations: int) -> OverheadResult:
    from chatstack.repository.assemble import SourceLayout, assemble_repository
    from chatstack import project
    from chatstack.serving.server import ServerPorts, TritonServer

    repository = assemble_repository(SourceLayout.from_root(project.ROOT), cfg, out_dir)
    s = cfg.serving
    with TritonServer(repository, ServerPorts(s.grpc_port, s.http_port, s.metrics_port), out_dir) as server:
        result = run(cfg, server.grpc_url, iterations)
    print(result.report())
    return result
