"""A tiny headless Locust run against the real chat ensemble, and the load test's refusals."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from chatstack import project
from chatstack.loadtest.measurement import TOTAL_NAME, TTFT_NAME
from chatstack.loadtest.run_stats import RunStats

pytestmark = pytest.mark.integration

LOCUSTFILE = project.ROOT / "loadtest" / "locustfile.py"
RUN_S = 6

TINY_MIX = """
max_tokens: 6
temperature: 0.0
ignore_eos: true
short: {weight: 1, prompts: ["What is a tuple?", "What is a set?"]}
multi_turn: {weight: 1, conversations: [["What is a dict?", "How do I add a key?"]]}
"""


def locust(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
                           *args], capture_output=True, text=True, timeout=timeout_s, cwd=project.ROOT)


def csv_rows(path: Path) -> dict[tuple[str, str], dict]:
    with path.open(newline="") as handle:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(handle)}


def test_headless_locust_reports_chat_requests_and_ttft_over_grpc_and_sse(stack, tmp_path):
    prompts = tmp_path / "mix.yaml"
    prompts.write_text(TINY_MIX)
    prefix = tmp_path / "run"
    done = locust("GrpcChatUser", "SseChatUser", "-u", "2", "-r", "2", "--run-time", f"{RUN_S}s",
                  "--stop-timeout", "30", "--grpc-url", stack.grpc_url,
                  "--host", f"http://127.0.0.1:{stack.server.ports.http}", "--user-qps", "2",
                  "--prompts", str(prompts), "--csv", str(prefix), "--json-file", str(prefix))
    assert done.returncode == 0, done.stderr[-3000:]

    rows = csv_rows(Path(f"{prefix}_stats.csv"))
    assert int(rows[("grpc", TOTAL_NAME)]["Request Count"]) >= 1
    assert int(rows[("grpc", TTFT_NAME)]["Request Count"]) >= 1
    assert float(rows[("grpc", TTFT_NAME)]["Median Response Time"]) > 0
    for protocol in ("grpc", "sse"):
        stats = RunStats.read(prefix, protocol, RUN_S)
        assert stats.total.count >= 1 and stats.total.failures == 0, (protocol, stats.failures)
        assert stats.ttft.count == stats.total.count  # every successful request had a first token
        assert stats.ttft.p50_ms <= stats.total.p50_ms


def test_more_grpc_users_than_gevents_default_pool_each_get_a_pool_thread(stack, tmp_path):
    """gevent's hub pool holds 10 threads; each gRPC user's channel parks a poll on one."""
    prompts = tmp_path / "mix.yaml"
    prompts.write_text(TINY_MIX)
    prefix = tmp_path / "run"
    done = locust("GrpcChatUser", "-u", "16", "-r", "16", "--run-time", f"{RUN_S}s", "--stop-timeout", "30",
                  "--grpc-url", stack.grpc_url, "--user-qps", "0.5", "--prompts", str(prompts),
                  "--csv", str(prefix), "--json-file", str(prefix))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "gevent thread pool: 20 threads for 16 users" in done.stdout + done.stderr
    stats = RunStats.read(prefix, "grpc", RUN_S)
    assert stats.total.count >= 16 and stats.total.failures == 0, stats.failures


def test_a_request_the_server_rejects_is_a_reported_failure(stack, tmp_path):
    prompts = tmp_path / "mix.yaml"
    prompts.write_text("max_tokens: 100000\nshort: {weight: 1, prompts: [\"hi\"]}\n")  # above max_tokens_limit
    prefix = tmp_path / "run"
    done = locust("GrpcChatUser", "-u", "1", "-r", "1", "--run-time", "2s", "--grpc-url", stack.grpc_url,
                  "--user-qps", "2", "--prompts", str(prompts), "--json-file", str(prefix), "--csv", str(prefix))
    assert done.returncode != 0  # Locust's exit code on failures
    stats = RunStats.read(prefix, "grpc", 2)
    assert stats.total.count >= 1 and stats.total.failures == stats.total.count
    assert stats.ttft is None
    assert any("triton error" in error and "max_tokens" in error for error in stats.failures), stats.failures


@pytest.mark.parametrize("args, message", [
    (["--grpc-url", "10.1.2.3:8001", "--run-time", "2s"], "not a loopback address"),
    (["--host", "http://example.com:8000", "--run-time", "2s"], "not a loopback address"),
    ([], "--run-time is required"),
])
def test_remote_targets_and_unbounded_runs_are_refused(args, message):
    done = locust("GrpcChatUser", "-u", "1", "-r", "1", *args, timeout_s=60)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr[-2000:]
