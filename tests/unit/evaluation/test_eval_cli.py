"""`chatstack eval model` then `chatstack register --if-better`, as the retraining pipeline calls them."""

from __future__ import annotations

import json

from chatstack import cli, project
from chatstack.evaluation.openai_endpoint import ChatCompletionsServer
from chatstack.registry.model_registry import ModelRegistry


def test_eval_model_ab_report_with_a_judge_then_register_if_better(tiny_pair, tmp_path, capsys):
    base, candidate = tiny_pair
    out = tmp_path / "eval"
    judge = ChatCompletionsServer(base).start()
    try:
        code = cli.main(["eval", "model", "--candidate", str(candidate), "--baseline", str(base), "--out", str(out),
                         "--pairs", "2", "--reader-count", "2", "--question-limit", "2", "--max-new-tokens", "8",
                         "--held-out", str(project.ROOT / "README.md"), "--reference", str(base),
                         "--judge-url", judge.base_url, "--judge-model", "tiny"])
    finally:
        judge.stop()
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    for side in ("candidate", "baseline"):
        figures = report[side]
        assert figures["perplexity"]["perplexity"] > 1 and figures["reader"]["answerable"] >= 0
        judged = figures["judge"]
        assert judged["scored"] + judged["unparseable"] == 2 and judged["failed"] == 0
        assert len(figures["answers"]) == 2
    assert report["candidate"]["preference"]["pairs"] == 2
    assert "preference" in report["baseline"]["skipped"]  # the baseline is its own reference
    assert sum(report["pairwise"].values()) == 2
    assert "| held-out perplexity" in (out / "report.md").read_text()

    registry_args = ["--registry", str(tmp_path / "registry"), "--export-root", str(tmp_path / "served")]
    assert cli.main(["register", "--model", str(candidate), "--name", "chat", "--report", str(out),
                     "--if-better", *registry_args]) == 0
    registered = ModelRegistry(tmp_path / "registry").versions("chat")
    assert registered == ([1] if report["verdict"]["candidate_better"] else [])

    report["verdict"]["candidate_better"] = True
    (out / "report.json").write_text(json.dumps(report))
    cli.main(["register", "--model", str(candidate), "--name", "chat", "--report", str(out / "report.json"),
              "--if-better", *registry_args])
    version = ModelRegistry(tmp_path / "registry").versions("chat")[-1]
    record = ModelRegistry(tmp_path / "registry").registration("chat", version)
    assert record.evaluation["verdict"]["candidate_better"] is True
    assert "answers" not in record.evaluation["candidate"] and "grades" not in record.evaluation["candidate"]["judge"]
    capsys.readouterr()
    cli.main(["registry", "list", *registry_args])
    assert f"* v{version}" in capsys.readouterr().out


def test_the_reader_eval_can_answer_as_a_deployment_decodes(tiny_pair, tmp_path, capsys):
    from chatstack.config import load_config

    base, _ = tiny_pair
    out, config = tmp_path / "eval", project.ROOT / "deploy" / "demo.toml"
    assert cli.main(["eval", "model", "--candidate", str(base), "--out", str(out), "--metrics", "reader",
                     "--reader-count", "3", "--reader-decoding", str(config)]) == 0
    report = json.loads((out / "report.json").read_text())
    generation = load_config(config).generation
    assert report["settings"]["reader_decoding"]["copy_from_passages"] is generation.copy_from_passages is True
    assert report["settings"]["reader_decoding"]["default_frequency_penalty"] == generation.default_frequency_penalty
    reader = report["candidate"]["reader"]
    assert reader["answerable"] + reader["unanswerable"] + reader["unsafe"] == 3


def test_a_reader_decoding_that_is_not_a_deployment_config_is_refused(tiny_pair, tmp_path):
    import pytest

    base, _ = tiny_pair
    bad = tmp_path / "bad.toml"
    bad.write_text("[generation]\ncopy_enter_after = 0\n")
    for path, says in ((tmp_path / "missing.toml", "no deployment config"), (bad, "copy_enter_after")):
        with pytest.raises(SystemExit, match=f"--reader-decoding.*{says}"):
            cli.main(["eval", "model", "--candidate", str(base), "--metrics", "reader",
                      "--reader-decoding", str(path), "--out", str(tmp_path / "eval")])
