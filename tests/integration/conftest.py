"""Integration fixtures: the demo model and a real Triton server serving the chat ensemble."""

from __future__ import annotations

import os
import socket
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatstack import project
from chatstack.config import config_from_dict
from chatstack.repository.assemble import SourceLayout, assemble_repository
from chatstack.serving.server import ServerPorts, TritonServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@dataclass
class RunningStack:
    server: TritonServer
    sessions_db: Path

    @property
    def grpc_url(self) -> str:
        return self.server.grpc_url

    def metric(self, name: str, **labels: str) -> float:
        return metric_value(self.server.ports.metrics, name, **labels)

    def metric_settles_at(self, name: str, expected: float, timeout_s: float = 10.0) -> float:
        """The metric once it equals `expected`, or its value when `timeout_s` runs out. A
        request's gauge and counters change just after its final response is sent, so a client
        can read them a moment before they settle; a leak never settles."""
        deadline = time.monotonic() + timeout_s
        while (value := self.metric(name)) != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        return value


def metric_value(metrics_port: int, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`, from Triton's metrics port."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
        lines = r.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines
               if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()))


@pytest.fixture(scope="session")
def demo_model_dir() -> Path:
    """The demo model (trained once and cached), or CHATSTACK_TEST_MODEL_DIR when set.

    Also makes the safety head the moderation steps load, once, before any server starts
    (otherwise each model instance would train it on first start).
    """
    from chatstack.config import SafetySection
    from chatstack.model.pretrain import ensure_demo_model
    from chatstack.safety.moderator import Moderator

    Moderator.from_config(SafetySection())

    if os.environ.get("CHATSTACK_TEST_MODEL_DIR"):
        return Path(os.environ["CHATSTACK_TEST_MODEL_DIR"])
    return ensure_demo_model(project.ARTIFACTS / "demo-model")


def start_stack(model_dir: Path, work: Path, sessions_db: Path, backend: str = "hf",
                output_moderation: bool = False) -> RunningStack:
    grpc, http, metrics = free_ports(3)
    cfg = config_from_dict({
        "model": {"dir": str(model_dir), "backend": backend},
        "generation": {"default_max_tokens": 32, "max_tokens_limit": 512, "default_temperature": 0.0},
        "sessions": {"db_path": str(sessions_db)},
        "serving": {"grpc_port": grpc, "http_port": http, "metrics_port": metrics},
        # output moderation releases text in checked windows; these tests look at token-level streaming
        "safety": {"output_enabled": output_moderation},
    })
    repository = assemble_repository(SourceLayout.from_root(project.ROOT), cfg, work)
    server = TritonServer(repository, ServerPorts(grpc, http, metrics), work)
    server.start(timeout_s=300)
    return RunningStack(server, sessions_db)


@pytest.fixture(scope="session")
def stack(demo_model_dir, tmp_path_factory) -> RunningStack:
    work = tmp_path_factory.mktemp("triton")
    running = start_stack(demo_model_dir, work, work / "sessions.sqlite")
    yield running
    running.server.stop()
