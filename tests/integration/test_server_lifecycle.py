"""Server lifecycle: sessions survive a restart; a model that fails to load is reported clearly."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import uuid

import pytest

from chatstack import project
from chatstack.client import ChatClient, ChatOptions
from chatstack.config import config_from_dict
from chatstack.repository.assemble import SourceLayout, assemble_repository
from chatstack.serving.server import ServerPorts, ServerStartError, TritonServer
from tests.integration.conftest import free_ports, start_stack
from tests.integration.helpers import preprocess_messages

pytestmark = pytest.mark.integration


def test_session_survives_a_server_restart(demo_model_dir, tmp_path):
    sessions_db = tmp_path / "sessions.sqlite"
    session = f"restart-{uuid.uuid4().hex}"
    first = start_stack(demo_model_dir, tmp_path / "first", sessions_db)
    try:
        reply = ChatClient(first.grpc_url, timeout_s=120).complete(
            "Remember the word pelican.", ChatOptions(session_id=session, max_tokens=8)
        )
    finally:
        first.server.stop()
    second = start_stack(demo_model_dir, tmp_path / "second", sessions_db)
    try:
        messages = preprocess_messages(second.grpc_url, "What word?", session)
    finally:
        second.server.stop()
    assert messages[1].content == "Remember the word pelican."
    assert messages[2].content == reply.text


def test_a_model_that_fails_to_load_is_named_with_its_log_line(tmp_path):
    broken_model = tmp_path / "broken-model"
    broken_model.mkdir()
    (broken_model / "config.json").write_text(json.dumps({"max_position_embeddings": 64}))
    grpc, http, metrics = free_ports(3)
    cfg = config_from_dict({
        "model": {"dir": str(broken_model)},
        "sessions": {"db_path": str(tmp_path / "s.sqlite")},
        "serving": {"grpc_port": grpc, "http_port": http, "metrics_port": metrics},
    })
    repository = assemble_repository(SourceLayout.from_root(project.ROOT), cfg, tmp_path / "serve")
    server = TritonServer(repository, ServerPorts(grpc, http, metrics), tmp_path / "serve")
    with pytest.raises(ServerStartError) as raised:
        server.start(timeout_s=240)
    message = str(raised.value)
    assert "failed to load 'preprocess'" in message or "failed to load 'generate'" in message, message
    assert server.process.poll() is not None


def test_serve_command_shuts_down_cleanly_on_sigterm(demo_model_dir, tmp_path):
    grpc, http, metrics = free_ports(3)
    config = tmp_path / "deploy.toml"
    config.write_text(
        f'[model]\ndir = "{demo_model_dir}"\n[sessions]\ndb_path = "{tmp_path / "s.sqlite"}"\n'
        f"[serving]\ngrpc_port = {grpc}\nhttp_port = {http}\nmetrics_port = {metrics}\n"
    )
    serve = subprocess.Popen(
        [sys.executable, "-m", "chatstack", "--config", str(config), "serve", "--out", str(tmp_path / "serve")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        ready = serve.stdout.readline()
        assert "Triton ready" in ready, ready + serve.stdout.read()
        assert ChatClient(f"127.0.0.1:{grpc}", timeout_s=120).complete("hi", ChatOptions(max_tokens=4)).finish_reason
        serve.send_signal(signal.SIGTERM)
        code = serve.wait(timeout=60)
        assert code == 0, serve.stdout.read()
    finally:
        if serve.poll() is None:
            serve.kill()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", grpc))  # the port is free again: Triton is gone
