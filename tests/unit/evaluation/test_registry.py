"""Model versions: numbered copies, registration records, the served pointer and its export."""

from __future__ import annotations

import json
import shutil

import pytest

from chatstack.alignment.demo import adopt_unregistered
from chatstack.datasets.lineage import write_lineage
from chatstack.datasets.version import DatasetVersion
from chatstack.registry.cli import decide_registration
from chatstack.registry.model_registry import ModelRegistry, Registration


def test_versions_count_up_and_record_where_they_came_from(tiny_pair, tmp_path):
    registry = ModelRegistry(tmp_path / "registry", export_root=tmp_path / "served")
    first = registry.register(tiny_pair[0], "chat", {"reader": 0.5}, note="first")
    source = tmp_path / "trained"
    shutil.copytree(tiny_pair[1], source)
    write_lineage(source, "dpo", {"train": DatasetVersion("file:///t", 3, "preferences", "abc", 10, "2026-01-01T00:00:00+00:00")})
    second = registry.register(source, "chat")

    assert (first.version, second.version) == (1, 2) and registry.versions("chat") == [1, 2]
    assert registry.served_version("chat") == 2
    record = Registration.read(registry.version_dir("chat", 2))
    assert record.source == str(source.resolve()) and record.created.endswith("+00:00")
    assert record.datasets["stage"] == "dpo" and record.datasets["datasets"]["train"]["version"] == 3
    assert record.training["dpo_summary.json"]["steps"] == 1  # the training summary travels with the version
    assert registry.registration("chat", 1).evaluation == {"reader": 0.5}
    served = tmp_path / "served" / "chat"
    assert (served / "model.safetensors").read_bytes() == (tiny_pair[1] / "model.safetensors").read_bytes()
    assert json.loads((served / "registration.json").read_text())["version"] == 2


def test_a_version_is_a_copy_and_can_be_served_again_later(tiny_pair, tmp_path):
    source = tmp_path / "model"
    shutil.copytree(tiny_pair[0], source)
    registry = ModelRegistry(tmp_path / "registry", export_root=tmp_path / "served")
    registry.register(source, "chat")
    registry.register(tiny_pair[1], "chat")
    shutil.rmtree(source)  # the training folder goes away; the version stays

    registry.promote("chat", 1)  # roll back
    assert registry.served_version("chat") == 1
    assert (tmp_path / "served" / "chat" / "model.safetensors").read_bytes() == \
        (tiny_pair[0] / "model.safetensors").read_bytes()
    assert registry.register(tiny_pair[1], "chat", serve=False).version == 3 and registry.served_version("chat") == 1


def test_bad_registrations_are_rejected(tiny_pair, tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    with pytest.raises(ValueError, match="name"):
        registry.register(tiny_pair[0], "../escape")
    with pytest.raises(ValueError, match="model"):
        registry.register(tmp_path, "chat")
    with pytest.raises(ValueError, match="no version 4"):
        registry.promote("chat", 4)
    assert registry.names() == [] or registry.versions("chat") == []


def _report(path, candidate, better: bool):
    path.write_text(json.dumps({"candidate": {"model": str(candidate)}, "baseline": {"model": "b"},
                                "verdict": {"candidate_better": better, "reason": "reader score 0.6 vs 0.5"}}))
    return path


def test_if_better_follows_the_report_and_checks_it_is_about_the_model(tiny_pair, tmp_path):
    better, worse = _report(tmp_path / "a.json", tiny_pair[1], True), _report(tmp_path / "b.json", tiny_pair[1], False)
    assert decide_registration(tiny_pair[1], better, if_better=True) == (True, "reader score 0.6 vs 0.5")
    assert decide_registration(tiny_pair[1], worse, if_better=True)[0] is False
    assert decide_registration(tiny_pair[1], worse, if_better=False)[0] is True
    with pytest.raises(ValueError, match="not --model"):
        decide_registration(tiny_pair[0], better, if_better=True)
    with pytest.raises(ValueError, match="needs --report"):
        decide_registration(tiny_pair[1], None, if_better=True)


def test_a_served_folder_from_before_the_registry_becomes_version_1(tiny_pair, tmp_path):
    shutil.copytree(tiny_pair[0], tmp_path / "demo-chat")
    (tmp_path / "demo-chat" / "registration.json").write_text(json.dumps({"registered": "artifacts/demo-sft"}))

    assert adopt_unregistered(tmp_path) is True
    registry = ModelRegistry(tmp_path / "registry")
    assert registry.served_version("demo-chat") == 1
    assert registry.registration("demo-chat", 1).evaluation == {"registered": "artifacts/demo-sft"}
    assert (tmp_path / "demo-chat" / "model.safetensors").is_file()
    assert adopt_unregistered(tmp_path) is False  # once only


def test_a_reader_candidate_is_served_only_when_it_handles_more_conversations_right(tiny_pair, tmp_path, monkeypatch):
    from chatstack.alignment import demo, reader_eval
    from chatstack.alignment.reader_eval import ReaderScore

    first, second = tmp_path / "demo-sft", tmp_path / "reader-sft"
    shutil.copytree(tiny_pair[0], first)
    shutil.copytree(tiny_pair[1], second)
    scores = {first: ReaderScore(42, 0.0, 18, 1.0), second: ReaderScore(42, 0.0, 18, 0.5)}  # 0.30, then 0.15
    monkeypatch.setattr(reader_eval, "evaluate_reader", lambda path, **shape: scores[path])
    artifacts = tmp_path / "artifacts"
    assert demo.register_best([first], artifacts)["served"]
    worse = demo.register_best([second], artifacts, serve_if_better=True)
    registry = demo._registry(artifacts)
    assert not worse["served"] and registry.served_version(demo.SERVED_NAME) == 1 and worse["version"] == 2
    assert demo._registered_from(registry, [second]) and not demo._registered_from(registry, [tmp_path / "other"])
    scores[second] = ReaderScore(42, 0.5, 18, 1.0)  # 0.65
    better = demo.register_best([second], artifacts, serve_if_better=True)
    assert better["served"] and registry.served_version(demo.SERVED_NAME) == 3


def test_registration_asks_in_the_sft_recipes_shape_including_questions_shown_nothing(tiny_pair, tmp_path, monkeypatch):
    from chatstack.alignment import demo, reader_eval
    from chatstack.alignment.reader_data import ReaderMix
    from chatstack.alignment.reader_eval import ReaderScore

    shapes = []
    monkeypatch.setattr(reader_eval, "evaluate_reader",
                        lambda path, **shape: shapes.append(shape) or ReaderScore(42, 0.5, 18, 1.0))
    mix = ReaderMix(passages="chunks", distractors=1, no_passages=0.1, chunk_tokens=120, chunk_overlap_tokens=24)
    demo.register_best([tiny_pair[0]], tmp_path / "artifacts", passages=mix)
    assert shapes == [{"passages": "chunks", "chunk_tokens": 120, "chunk_overlap_tokens": 24, "distractors": 1,
                       "no_passages": 0.1, "refusal": 0.05, "decoding": None,
                       "count": demo.REGISTRATION_CONVERSATIONS}]


def test_registration_answers_with_the_deployments_decoding_and_records_it(tiny_pair, tmp_path, monkeypatch):
    from chatstack.alignment import demo, reader_eval
    from chatstack.alignment.reader_eval import ReaderScore
    from chatstack.project import ROOT

    seen = []
    monkeypatch.setattr(reader_eval, "evaluate_reader",
                        lambda path, **shape: seen.append(shape["decoding"]) or ReaderScore(42, 0.5, 18, 1.0))
    decoding = demo.deployment_decoding(ROOT)
    assert decoding.copy_from_passages  # the demo deployment quotes its passages
    demo.register_best([tiny_pair[0]], tmp_path / "artifacts", decoding=decoding)
    assert seen == [decoding]
    registry = demo._registry(tmp_path / "artifacts")
    record = registry.registration(demo.SERVED_NAME, registry.served_version(demo.SERVED_NAME))
    assert record.evaluation["reader_conversations"] == demo.REGISTRATION_CONVERSATIONS
    assert record.evaluation["reader_decoding"] == {
        "greedy": True, "frequency_penalty": decoding.default_frequency_penalty, "quote_bound": True,
        "copy_enter_after": decoding.copy_enter_after}
