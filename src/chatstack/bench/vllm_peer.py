"""vLLM (CPU build) as the peer engine in `chatstack bench engine`.

vLLM lives in its own venv (`make vllm-venv` → `.venv-vllm`, never in the default install):
this module only starts its OpenAI-compatible server as a subprocess on 127.0.0.1 with the
same weights, and drives it over HTTP with the same token-id prompts as the native engine
(`ignore_eos` + `min_tokens` so every request produces exactly its `max_tokens`).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil

from chatstack import project
from chatstack.bench.stats import Summary
from chatstack.bench.workload import Workload, latency_workload, progress

DEFAULT_VENV = project.ROOT / ".venv-vllm"
START_TIMEOUT_S = 600


def vllm_python(venv: Path = DEFAULT_VENV) -> Path | None:
    """The venv's interpreter, or None when the venv has not been made."""
    python = venv / "bin" / "python"
    return python if python.exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class EngineLimits:
    """The KV cache and per-step limits vLLM runs with; by default vLLM's own CPU defaults
    (2 GiB of KV cache, 2,048 tokens and 128 sequences per step)."""

    kv_cache_bytes: int = 2 * 2**30
    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None

    def arguments(self) -> list[str]:
        args = ["--kv-cache-memory-bytes", str(self.kv_cache_bytes)]
        if self.max_num_batched_tokens is not None:
            args += ["--max-num-batched-tokens", str(self.max_num_batched_tokens)]
        if self.max_num_seqs is not None:
            args += ["--max-num-seqs", str(self.max_num_seqs)]
        return args


class VLLMServer:
    """`with VLLMServer(python, model_dir, threads) as server:` — started, healthy, stopped on exit."""

    def __init__(self, python: Path, model_dir: Path, threads: int | None, log_path: Path | None = None,
                 dtype: str = "float32", limits: "EngineLimits | None" = None):
        self.python, self.model_dir, self.threads, self.dtype = python, Path(model_dir), threads, dtype
        self.limits = limits or EngineLimits()
        self.port = _free_port()
        self.log_path = log_path or Path(os.environ.get("TMPDIR", "/tmp")) / f"chatstack-vllm-{self.port}.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "VLLMServer":
        env = {k: v for k, v in os.environ.items() if k != "VLLM_CPU_KVCACHE_SPACE"}
        env |= {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
        if self.threads is not None:  # the same thread count as the native engine, unpinned
            env |= {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": str(self.threads)}
        command = [str(self.python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model_dir),
                   "--dtype", self.dtype, "--host", "127.0.0.1", "--port", str(self.port),
                   "--skip-tokenizer-init", "--served-model-name", "bench", *self.limits.arguments()]
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.started_s = self._wait_healthy()
        return self

    def _wait_healthy(self) -> float:
        start = time.monotonic()
        while time.monotonic() - start < START_TIMEOUT_S:
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM exited with code {self.process.returncode}; log: {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return time.monotonic() - start
            except OSError:
                pass
            time.sleep(1)
        raise TimeoutError(f"vLLM was not healthy after {START_TIMEOUT_S} s; log: {self.log_path}")

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    # -- requests --------------------------------------------------------------------

    def _body(self, prompt, max_tokens: int, stream: bool) -> bytes:
        return json.dumps({"model": "bench", "prompt": list(prompt), "max_tokens": max_tokens, "min_tokens": max_tokens,
                           "temperature": 0.0, "ignore_eos": True, "stream": stream, "return_token_ids": True}).encode()

    def _post(self, body: bytes, timeout_s: float = 3600):
        request = urllib.request.Request(f"{self.url}/v1/completions", body, {"Content-Type": "application/json"})
        return urllib.request.urlopen(request, timeout=timeout_s)

    def complete(self, prompt, max_tokens: int) -> list[int]:
        """One non-streamed greedy completion; returns its token ids."""
        with self._post(self._body(prompt, max_tokens, stream=False)) as response:
            tokens = json.load(response)["choices"][0]["token_ids"]
        if len(tokens) != max_tokens:
            raise RuntimeError(f"vLLM produced {len(tokens)} tokens, asked for {max_tokens}")
        return tokens

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server and all its processes (API server, engine core, worker)."""
        root = psutil.Process(self.process.pid)
        total = 0.0
        for process in [root, *root.children(recursive=True)]:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def throughput(self, prompts, max_tokens) -> dict:
        """Every request submitted at once, as for the native engine; `tokens` in request order.
        `cpu_s`: the server's CPU seconds for the run (the HTTP clients in this process not counted)."""
        self.complete(prompts[0][:8], 4)  # warm-up
        cpu_before, start = self.cpu_seconds(), time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
            tokens = list(pool.map(self.complete, prompts, max_tokens))
        elapsed = time.perf_counter() - start
        return {"seconds": elapsed, "tok_s": sum(map(len, tokens)) / elapsed, "tokens": tokens,
                "cpu_s": self.cpu_seconds() - cpu_before}

    def stream_timings(self, prompt, max_tokens: int) -> list[float]:
        """Seconds from submit to each streamed chunk that carries output."""
        start, times = time.perf_counter(), []
        with self._post(self._body(prompt, max_tokens, stream=True)) as response:
            for raw in response:
                line = raw.decode().strip()
                if not line.startswith("data:") or line == "data: [DONE]":
                    continue
                choice = json.loads(line[5:])["choices"][0]
                if choice.get("token_ids"):
                    times.append(time.perf_counter() - start)
        return times

    def latency(self, prompts, max_tokens: int, concurrency: int) -> tuple[Summary, Summary]:
        """TTFT and inter-chunk gaps with `concurrency` clients sending back to back."""
        ttfts, gaps, pending, lock = [], [], list(prompts), threading.Lock()

        def client() -> None:
            while True:
                with lock:
                    if not pending:
                        return
                    prompt = pending.pop()
                times = self.stream_timings(prompt, max_tokens)
                with lock:
                    ttfts.append(times[0])
                    gaps.extend(b - a for a, b in zip(times, times[1:]))

        threads = [threading.Thread(target=client) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return Summary.of(ttfts), Summary.of(gaps)


def run_peer(python: Path, model_dir: Path, workload: Workload, args, vocab: int, limits: EngineLimits) -> dict:
    """vLLM on the same weights: the throughput workload, then the same latency workloads as native."""
    progress(f"vLLM: starting the server ({' '.join(limits.arguments())})")
    with VLLMServer(python, model_dir, args.threads, dtype=args.dtype, limits=limits) as server:
        progress(f"vLLM throughput (server up after {server.started_s:.0f} s)")
        result = server.throughput(workload.prompts, workload.max_tokens) | {"start_s": server.started_s, "latency": {}}
        for concurrency in args.concurrency if args.vllm_latency else ():
            progress(f"vLLM latency at concurrency {concurrency}")
            load = latency_workload(args, vocab, concurrency)
            result["latency"][concurrency] = server.latency(load.prompts, args.latency_output, concurrency)
    return result
