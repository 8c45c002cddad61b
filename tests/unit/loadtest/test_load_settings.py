"""Load-test configuration without a server: targets, prompt mix, step shape, run statistics, judging."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from chatstack.loadtest.bench import LoadBenchConfig, judge
from chatstack.loadtest.prompts import PromptCursor, PromptMix
from chatstack.loadtest.run_stats import RunStats
from chatstack.loadtest.settings import DEFAULT_PROMPTS, LoadSettings
from chatstack.loadtest.shape import RateSteps
from chatstack.loadtest.targets import TargetNotAllowed, loopback_host


@pytest.mark.parametrize("url", ["127.0.0.1:8001", "http://127.0.0.1:8000", "localhost:8001", "[::1]:8001",
                                 "127.0.0.2:9000"])
def test_loopback_targets_are_accepted(url):
    host, _port = loopback_host(url, "--grpc-url")
    assert host


@pytest.mark.parametrize("url", ["10.0.0.5:8001", "http://192.168.1.2:8000", "example.com:8001",
                                 "https://127.0.0.1:8000", "0.0.0.0:8001", ""])
def test_other_targets_are_refused_naming_the_field(url):
    with pytest.raises(TargetNotAllowed, match="--grpc-url"):
        loopback_host(url, "--grpc-url")


def test_the_shipped_prompt_mix_loads():
    mix = PromptMix.load(DEFAULT_PROMPTS)
    assert mix.short and mix.rag and mix.conversations and all(w > 0 for w in mix.weights)


def test_ignore_eos_reaches_every_request_of_the_mix_and_is_left_to_the_server_otherwise(tmp_path):
    path = tmp_path / "mix.yaml"
    path.write_text("max_tokens: 6\nignore_eos: true\nshort: {weight: 1, prompts: [a]}")
    options = PromptMix.load(path).chat_options("s1")
    assert (options.ignore_eos, options.max_tokens, options.session_id) == (True, 6, "s1")
    assert PromptMix.load(DEFAULT_PROMPTS).chat_options(None).ignore_eos is None


def test_a_multi_turn_conversation_keeps_one_session_then_a_new_one_starts():
    mix = PromptMix(short=(), rag=(), conversations=(("a", "b", "c"),), weights=(0, 0, 1))
    cursor = PromptCursor(mix, random.Random(1))
    turns = [cursor.next_turn() for _ in range(6)]
    assert [t.text for t in turns] == ["a", "b", "c", "a", "b", "c"]
    assert len({t.session_id for t in turns[:3]}) == 1 and turns[0].session_id != turns[3].session_id


def test_weights_pick_kinds_and_stateless_turns_have_no_session():
    mix = PromptMix(short=("s",), rag=("r",), conversations=(), weights=(1, 1, 0))
    turns = [PromptCursor(mix, random.Random(0)).next_turn() for _ in range(1)] + \
        [t for c in [PromptCursor(mix, random.Random(7))] for t in (c.next_turn() for _ in range(40))]
    assert {t.kind for t in turns} == {"short", "rag"} and all(t.session_id is None for t in turns)


@pytest.mark.parametrize("body, field", [
    ("short: {weight: -1, prompts: [a]}", "short.weight"),
    ("rag: {weight: 1, prompts: []}", "rag has weight"),
    ("short: {weight: 0, prompts: [a]}", "at least one"),
    ("multi_turn: {weight: 1, conversations: [[]]}", "multi_turn.conversations"),
    ("max_tokens: 0\nshort: {weight: 1, prompts: [a]}", "max_tokens"),
    ("shrt: {weight: 1}", "unknown keys"),
    ("ignore_eos: sometimes\nshort: {weight: 1, prompts: [a]}", "ignore_eos"),
])
def test_bad_prompt_mix_is_rejected_naming_the_field(tmp_path, body, field):
    path = tmp_path / "mix.yaml"
    path.write_text(body)
    with pytest.raises(ValueError, match=field):
        PromptMix.load(path)


def test_step_shape_runs_enough_users_for_each_rate_then_ends():
    steps = RateSteps.parse("1, 2.5,4", step_s=10, user_qps=0.5)
    assert [steps.users_at(t) for t in (0, 9.9, 10, 25, 30)] == [2, 2, 5, 8, None]
    with pytest.raises(ValueError, match="--step-qps"):
        RateSteps.parse("1,x", 10, 0.5)
    with pytest.raises(ValueError, match="--user-qps"):
        RateSteps.parse("1", 10, 0)


def test_settings_reject_bad_values_naming_the_flag():
    with pytest.raises(ValueError, match="--request-timeout-s"):
        LoadSettings(request_timeout_s=0)
    with pytest.raises(ValueError, match="--host"):
        LoadSettings(http_url="http://10.0.0.1:8000")
    with pytest.raises(ValueError, match="--think-min-s"):
        LoadSettings(think_min_s=3, think_max_s=1)


def _locust_entry(name: str, times_ms: dict[int, int], failures: int = 0) -> dict:
    count = sum(times_ms.values())
    return {"name": name, "method": "grpc", "num_requests": count, "num_failures": failures,
            "response_times": {str(k): v for k, v in times_ms.items()},
            "total_response_time": float(sum(k * v for k, v in times_ms.items())),
            "start_time": 0.0, "last_request_timestamp": 10.0}


def test_run_stats_percentiles_follow_locust_buckets(tmp_path):
    prefix = tmp_path / "run"
    times = {50: 90, 120: 9, 400: 1}  # 100 successful requests
    Path(f"{prefix}.json").write_text(json.dumps([_locust_entry("chat TTFT", times),
                                                  _locust_entry("chat", {900: 98, 30000: 2}, failures=2)]))
    Path(f"{prefix}_failures.csv").write_text("Method,Name,Error,Occurrences,First Seen,Last Seen\n"
                                              "grpc,chat,ChatFailure('timeout: x'),2,a,b\n")
    stats = RunStats.read(prefix, "grpc", window_s=20)
    assert (stats.ttft.p50_ms, stats.ttft.p90_ms, stats.ttft.p99_ms) == (50, 50, 120)
    assert stats.total.requests_per_s == 5.0 and stats.error_rate == 0.02
    assert stats.failures == {"ChatFailure('timeout: x')": 2}
    cfg = LoadBenchConfig(ttft_p99_budget_ms=200, max_error_rate=0.05)
    assert judge(stats, offered_qps=5.0, cfg=cfg) == (True, "")
    assert judge(stats, offered_qps=8.0, cfg=cfg)[0] is False  # achieved 5 of 8 QPS
    assert "P99 TTFT" in judge(stats, 5.0, LoadBenchConfig(ttft_p99_budget_ms=100, max_error_rate=0.05))[1]
    assert "error rate" in judge(stats, 5.0, LoadBenchConfig(max_error_rate=0.01))[1]


@pytest.mark.parametrize("kwargs, field", [
    ({"rates_qps": (2.0, 1.0)}, "--rates"), ({"rates_qps": ()}, "--rates"), ({"step_s": 1}, "--step-s"),
    ({"protocol": "ws"}, "--protocol"), ({"bisections": 9}, "--bisections"), ({"pacing_s": 0}, "--pacing-s"),
    ({"omp_threads": 0}, "--omp-threads"),
])
def test_bench_config_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=field):
        LoadBenchConfig(**kwargs)


def test_users_cover_the_rate_for_the_pacing_period():
    cfg = LoadBenchConfig(pacing_s=4)
    assert [cfg.users_for(r) for r in (0.1, 0.25, 1, 2.5)] == [1, 1, 4, 10]


def test_library_modules_do_not_import_locust():
    """Locust monkey-patches the importing process with gevent; only Locust's own processes may import it."""
    import subprocess
    import sys

    code = ("import sys, chatstack.loadtest.bench, chatstack.loadtest.cli, chatstack.loadtest.shape; "
            "print('locust' in sys.modules, 'gevent' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split() == ["False", "False"]
