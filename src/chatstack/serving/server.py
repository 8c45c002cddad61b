"""Start, watch and stop a `tritonserver` process serving a rendered model repository."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from chatstack.serving.triton_dist import TritonDistribution, find_triton

_FAILURE_MARKERS = ("failed to load", "error:", "traceback", "exception", "unavailable:")


@dataclass(frozen=True)
class ServerPorts:
    grpc: int = 8001
    http: int = 8000
    metrics: int = 8002

    def __post_init__(self) -> None:
        for name in ("grpc", "http", "metrics"):
            port = getattr(self, name)
            if not 1 <= port <= 65535:
                raise ValueError(f"ports.{name} must be in [1, 65535], got {port}")
        if len({self.grpc, self.http, self.metrics}) != 3:
            raise ValueError("ports.grpc, ports.http and ports.metrics must differ")


class ServerStartError(RuntimeError):
    """Triton exited or never became ready; the message carries the relevant log lines."""


class TritonServer:
    """A tritonserver child process bound to 127.0.0.1-reachable ports."""

    def __init__(self, repository: Path, ports: ServerPorts, work_dir: Path, log_verbose: int = 0):
        self.repository = repository
        self.ports = ports
        self.work_dir = work_dir
        self.log_path = work_dir / f"tritonserver-{ports.grpc}.log"
        self.log_verbose = log_verbose
        self.process: subprocess.Popen | None = None
        self._kill_at: float | None = None

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    def command(self, dist: TritonDistribution) -> list[str]:
        return [
            str(dist.binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={dist.backend_dir}",
            f"--grpc-port={self.ports.grpc}",
            f"--http-port={self.ports.http}",
            f"--metrics-port={self.ports.metrics}",
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--disable-auto-complete-config",
            "--pinned-memory-pool-byte-size=0",
            "--exit-timeout-secs=20",
            f"--log-verbose={self.log_verbose}",
        ]

    def start(self, timeout_s: float = 300.0) -> None:
        dist = find_triton(self.work_dir)
        env = dict(os.environ, LD_LIBRARY_PATH=dist.library_path, CHATSTACK_SITE_DIRS=dist.site_dirs)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        # one OpenMP thread per model instance unless the operator says otherwise: several stubs
        # each spinning a thread per core made TTFT 1.5x (quiet) to 52x (busy machine) slower
        env.setdefault("OMP_NUM_THREADS", "1")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command(dist), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://127.0.0.1:{self.ports.http}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerStartError(f"tritonserver exited with code {self.process.returncode}:\n{self.failure_lines()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        self.stop()
        raise ServerStartError(f"tritonserver not ready after {timeout_s:.0f} s:\n{self.failure_lines()}")

    def failure_lines(self, limit: int = 40) -> str:
        """The log lines that explain a failed start (model load errors first)."""
        if not self.log_path.exists():
            return "(no log)"
        lines = self.log_path.read_text(errors="replace").splitlines()
        hits = [line for line in lines if any(m in line.lower() for m in _FAILURE_MARKERS)]
        chosen = hits or lines
        return "\n".join(chosen[-limit:]) + f"\n(full log: {self.log_path})"

    def request_stop(self, grace_s: float = 30.0) -> None:
        """Ask Triton to shut down (SIGTERM); `wait` kills it if it outlives `grace_s`.

        Safe to call from a signal handler: it never blocks.
        """
        if self.process is None or self.process.poll() is not None:
            return
        self._kill_at = time.monotonic() + grace_s
        self.process.send_signal(signal.SIGTERM)

    @property
    def stop_requested(self) -> bool:
        return self._kill_at is not None

    def wait(self) -> int:
        """Block until Triton exits, enforcing the grace period of `request_stop`."""
        while True:
            try:
                return self.process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if self._kill_at is not None and time.monotonic() > self._kill_at:
                    os.killpg(self.process.pid, signal.SIGKILL)

    def stop(self, grace_s: float = 30.0) -> None:
        self.request_stop(grace_s)
        if self.process is not None:
            self.wait()

    def __enter__(self) -> "TritonServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
