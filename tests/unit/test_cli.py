"""Command-line parsing: options reach their subcommand; stray flags are errors."""

from __future__ import annotations

import pytest

from chatstack import cli


def test_serving_bench_options_are_parsed_not_swallowed():
    args, extra = cli.parser().parse_known_args(["bench", "serving", "--requests", "10", "--concurrency", "4"])
    assert (args.requests, args.concurrency, extra) == (10, 4, [])


def test_engine_bench_passes_its_own_flags_on(monkeypatch):
    seen = {}
    monkeypatch.setattr("chatstack.bench.engine.main", lambda argv: seen.setdefault("argv", argv))
    assert cli.main(["bench", "engine", "--threads", "1", "--layers", "2"]) == 0
    assert seen["argv"] == ["--threads", "1", "--layers", "2"]


def test_unknown_flag_elsewhere_is_an_error(capsys):
    with pytest.raises(SystemExit):
        cli.main(["build", "--bogus"])
    assert "--bogus" in capsys.readouterr().err
