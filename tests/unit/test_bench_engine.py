"""`chatstack bench engine` end to end on a tiny random Llama (no vLLM): the report's rows."""

from __future__ import annotations

import pytest

from chatstack.bench import engine as bench
from tests.unit.engine.helpers import one_torch_thread

TINY = ["--hidden", "64", "--layers", "1", "--vocab", "256", "--num-requests", "4", "--min-prompt", "8",
        "--max-prompt", "24", "--min-output", "4", "--max-output", "8", "--no-vllm", "--threads", "1"]


@pytest.mark.parametrize("dtype, attention", [("float32", "kernel"), ("bfloat16", "auto"), ("float32", "torch")])
def test_throughput_report_compares_native_with_hf_in_the_same_dtype(dtype, attention, capsys):
    with one_torch_thread():
        report = bench.main(TINY + ["--throughput-only", "--dtype", dtype, "--attention", attention])
    assert f"{dtype} weights and KV cache for every engine, native attention {attention!r}" in report
    native = next(line for line in report.splitlines() if line.startswith("| native |"))
    hf = next(line for line in report.splitlines() if line.startswith("| HF generate"))
    assert float(native.split("|")[2]) > 0 and float(hf.split("|")[4]) >= 0  # tok/s, CPU seconds
    assert hf.split("|")[5].strip().endswith("×")
    assert next(line for line in report.splitlines() if line.startswith("single-stream decode:"))
    # a lone decode takes the one-call step in either dtype, never with torch attention
    path = next(line for line in report.splitlines() if line.startswith("native projections:"))
    assert ("a lone decode: the one-call step (+" in path) == (attention != "torch"), path


def test_bad_ranges_are_refused_naming_the_flag():
    with pytest.raises(SystemExit):
        bench.parse_args(["--min-prompt", "30", "--max-prompt", "10"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--dtype", "float16"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--admission-lookahead", "-1"])
    assert bench.parse_args(["--admission-lookahead", "0"]).admission_lookahead == 0
    with pytest.raises(SystemExit):
        bench.parse_args(["--decode-rows-max-seqs", "0"])
    assert bench.parse_args(["--decode-rows-max-seqs", "1"]).decode_rows_max_seqs == 1


def test_vllm_gets_the_native_engines_kv_bytes_and_step_limits_unless_told_otherwise():
    args = bench.parse_args(["--kv-budget-tokens", "4096", "--max-batched-tokens", "1024", "--num-requests", "16"])
    limits = bench.peer_limits(args, kv_bytes_per_token=8192)
    assert limits.arguments() == ["--kv-cache-memory-bytes", str(4096 * 8192), "--max-num-batched-tokens", "1024",
                                  "--max-num-seqs", "16"]
    own = bench.peer_limits(bench.parse_args(["--vllm-own-limits"]), kv_bytes_per_token=8192)
    assert own.arguments() == ["--kv-cache-memory-bytes", str(2 * 2**30)]
