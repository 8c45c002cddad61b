"""Deployment config: strict keys, validated values, path resolution, JSON round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatstack.config import (
    DeploymentConfig,
    GenerationSection,
    ModelSection,
    ServingSection,
    SessionsSection,
    config_from_dict,
    load_config,
    load_resolved_json,
)
from chatstack.project import DEFAULT_CONFIG


def write_toml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_unknown_top_level_key_is_named():
    with pytest.raises(ValueError, match="genration") as info:
        config_from_dict({"genration": {}})
    assert "allowed" in str(info.value) and "generation" in str(info.value)


@pytest.mark.parametrize(
    ("section", "key"),
    [("model", "dirr"), ("generation", "max_token"), ("sessions", "db"), ("serving", "grpc")],
)
def test_unknown_key_inside_a_section_is_named_with_its_section(section, key):
    with pytest.raises(ValueError, match=key) as info:
        config_from_dict({section: {key: 1}})
    assert section in str(info.value)


def test_section_that_is_not_a_table():
    with pytest.raises(ValueError, match="serving must be a table"):
        config_from_dict({"serving": 8})


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"generation": {"default_max_tokens": 600, "max_tokens_limit": 512}}, "default_max_tokens"),
        ({"generation": {"default_max_tokens": 0}}, "default_max_tokens"),
        ({"generation": {"max_tokens_limit": 0, "default_max_tokens": 0}}, "max_tokens_limit"),
        ({"serving": {"max_batch_size": 0}}, "serving.max_batch_size"),
        ({"serving": {"preprocess_instances": 0}}, "serving.preprocess_instances"),
        ({"serving": {"generate_instances": -1}}, "serving.generate_instances"),
        ({"model": {"backend": "vllm"}}, "model.backend"),
        ({"model": {"dtype": "int8"}}, "model.dtype"),
        ({"sessions": {"retrieval_reserve_tokens": -1}}, "sessions.retrieval_reserve_tokens"),
    ],
)
def test_invalid_value_names_the_field(data, field):
    with pytest.raises(ValueError, match=field):
        config_from_dict(data)


def test_sections_validate_when_built_directly():
    with pytest.raises(ValueError, match="max_batch_size"):
        ServingSection(max_batch_size=0)
    with pytest.raises(ValueError, match="default_max_tokens"):
        GenerationSection(default_max_tokens=10, max_tokens_limit=5)


def test_values_from_a_dict_reach_the_sections():
    cfg = config_from_dict({"generation": {"default_max_tokens": 32, "max_tokens_limit": 64},
                            "serving": {"max_batch_size": 2, "cancel_dir": "/tmp/marks"}})
    assert cfg.generation == GenerationSection(default_max_tokens=32, max_tokens_limit=64)
    assert cfg.serving.max_batch_size == 2 and cfg.serving.cancel_dir == "/tmp/marks"
    assert cfg.model == ModelSection() and cfg.sessions == SessionsSection()


def test_toml_relative_paths_resolve_against_the_files_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    path = write_toml(tmp_path / "deploy" / "site.toml", """
[model]
dir = "../models/tiny"

[sessions]
db_path = "state/sessions.sqlite"
""")
    cfg = load_config(path)
    assert cfg.model.dir == str((tmp_path / "models" / "tiny").resolve())
    assert cfg.sessions.db_path == str((tmp_path / "deploy" / "state" / "sessions.sqlite").resolve())


def test_toml_absolute_paths_are_kept(tmp_path):
    model_dir = tmp_path / "elsewhere" / "model"
    path = write_toml(tmp_path / "a" / "site.toml", f'[model]\ndir = "{model_dir}"\n')
    assert load_config(path).model.dir == str(model_dir)


def test_explicit_base_overrides_the_files_folder(tmp_path):
    path = write_toml(tmp_path / "a" / "site.toml", '[model]\ndir = "m"\n')
    assert load_config(path, base=tmp_path / "b").model.dir == str((tmp_path / "b" / "m").resolve())


def test_no_file_gives_defaults_resolved_against_base(tmp_path):
    cfg = load_config(None, base=tmp_path)
    assert cfg.model.dir == str(tmp_path / ModelSection().dir)
    assert cfg.generation == GenerationSection()


def test_toml_with_unknown_key_fails_to_load(tmp_path):
    path = write_toml(tmp_path / "bad.toml", "[serving]\nmax_batch_sizes = 4\n")
    with pytest.raises(ValueError, match="max_batch_sizes"):
        load_config(path)


def test_the_shipped_demo_config_loads():
    cfg = load_config(DEFAULT_CONFIG)
    assert Path(cfg.model.dir).is_absolute() and Path(cfg.sessions.db_path).is_absolute()


def test_json_round_trip(tmp_path):
    path = write_toml(tmp_path / "site.toml", """
[model]
dir = "model"
dtype = "bfloat16"

[generation]
default_max_tokens = 100
max_tokens_limit = 200
default_temperature = 0.0
default_top_k = 5

[sessions]
system_prompt = "Réponds en français 🙂"

[serving]
max_batch_size = 4
cancel_dir = "/dev/shm/x"

[engine]
num_kv_blocks = 2048
quantization = "int8"
attention = "torch"
""")
    cfg = load_config(path)
    json_path = tmp_path / "deployment.json"
    json_path.write_text(cfg.to_json())
    assert load_resolved_json(json_path) == cfg


def test_json_round_trip_keeps_none(tmp_path):
    cfg = DeploymentConfig().resolved(tmp_path)
    json_path = tmp_path / "deployment.json"
    json_path.write_text(cfg.to_json())
    loaded = load_resolved_json(json_path)
    assert loaded == cfg and loaded.serving.cancel_dir is None


def test_engine_section_reaches_the_native_engine_config():
    cfg = config_from_dict({"engine": {"num_kv_blocks": 4096, "max_num_seqs": 16, "enable_prefix_caching": False}})
    engine = cfg.engine.engine_config()
    assert (engine.num_kv_blocks, engine.max_num_seqs, engine.enable_prefix_caching) == (4096, 16, False)
    assert engine.kv_capacity_tokens == 4096 * 16 and engine.attention == "auto"


@pytest.mark.parametrize(("data", "message"), [
    ({"block_size": 0}, "engine.block_size must be >= 1"),
    ({"attention": "flash"}, "engine.attention must be one of"),
    ({"quantization": "int3"}, "engine.quantization must be one of"),
    ({"single_decode": "always"}, "engine.single_decode must be one of"),
    ({"float32_prepack": "maybe"}, "engine.float32_prepack must be one of"),
    ({"admission_lookahead": -8}, "engine.admission_lookahead must be >= 0"),
    ({"decode_rows_max_seqs": 0}, "engine.decode_rows_max_seqs must be >= 1"),
    ({"max_num_seqs": "many"}, "engine.max_num_seqs must be of type int"),
    ({"compile": True}, r"unknown key\(s\) \['compile'\] in engine"),
])
def test_bad_engine_values_name_the_field(data, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict({"engine": data})


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        DeploymentConfig().serving.max_batch_size = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"generation": {"default_temperature": -1.0}}, "generation.default_temperature"),
        ({"generation": {"default_top_p": 0.0}}, "generation.default_top_p"),
        ({"generation": {"default_top_k": -3}}, "generation.default_top_k"),
    ],
)
def test_invalid_generation_default_is_rejected_at_load(data, field):
    with pytest.raises(ValueError, match=field):
        config_from_dict(data)


def test_wrong_value_type_raises_value_error_naming_the_field():
    with pytest.raises(ValueError, match="serving.max_batch_size"):
        config_from_dict({"serving": {"max_batch_size": "8"}})
