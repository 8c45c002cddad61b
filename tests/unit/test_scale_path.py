"""Scale path: accelerate configs load with accelerate's own loader and launcher validation;
the Llama-3-8B recipes load with the same recipe loaders as the demo and bad values are refused."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
from accelerate.utils.launch import prepare_multi_gpu_env

from chatstack import project
from chatstack.alignment.dpo import DPORecipe
from chatstack.alignment.sft import SFTRecipe
from chatstack.recipes import load_recipe

ACCELERATE = project.ROOT / "training" / "accelerate"
RECIPES = project.ROOT / "training" / "recipes"


def launch_args(config: Path, stage: str):
    """The arguments `accelerate launch --config_file CONFIG training/align.py STAGE` would run with."""
    parsed = launch_command_parser().parse_args(["--config_file", str(config), "training/align.py", stage])
    return _validate_launch_command(parsed)[0]


def test_fsdp_config_builds_the_fsdp2_plugin_the_launcher_would():
    config = load_config_from_file(str(ACCELERATE / "fsdp.yaml"))
    assert config.distributed_type == DistributedType.FSDP and config.mixed_precision == "bf16"
    env = prepare_multi_gpu_env(launch_args(ACCELERATE / "fsdp.yaml", "sft"))
    with mock.patch.dict(os.environ, env):
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.transformer_cls_names_to_wrap == ["LlamaDecoderLayer"]
    assert plugin.reshard_after_forward is True and plugin.cpu_ram_efficient_loading is True
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"


def test_deepspeed_config_is_zero3_with_16bit_save():
    config = load_config_from_file(str(ACCELERATE / "deepspeed_zero3.yaml"))
    assert config.distributed_type == DistributedType.DEEPSPEED
    args = launch_args(ACCELERATE / "deepspeed_zero3.yaml", "dpo")
    assert args.use_deepspeed and args.zero_stage == 3 and args.zero3_init_flag and args.zero3_save_16bit_model
    assert args.mixed_precision == "bf16" and args.num_processes == 8


def test_llama3_8b_recipes_load_with_the_demo_loaders():
    sft = SFTRecipe.from_dict(load_recipe(RECIPES / "llama3_8b_sft.yaml"))
    dpo = DPORecipe.from_dict(load_recipe(RECIPES / "llama3_8b_dpo.yaml"))
    for recipe in (sft, dpo):
        kwargs = recipe.compute.trainer_kwargs()
        assert kwargs["bf16"] and not kwargs["use_cpu"] and kwargs["gradient_checkpointing"]
    assert sft.max_length == 8192 and sft.lora_rank == 0 and sft.dataset.uri.startswith("s3://")
    assert not sft.dataset.generate and not dpo.dataset.generate  # train on committed sets, never the demo generator
    assert SFTRecipe.from_dict(load_recipe(RECIPES / "llama3_8b_sft.yaml", ["lora_rank=16"])).lora_rank == 16
    assert dpo.feedback_dataset.uri.endswith("feedback_pairs") and dpo.compute.gradient_accumulation_steps == 8


def test_demo_recipes_keep_the_cpu_settings():
    kwargs = SFTRecipe.from_dict(load_recipe(RECIPES / "demo_sft.yaml")).compute.trainer_kwargs()
    assert kwargs == {"use_cpu": True, "bf16": False, "fp16": False, "gradient_checkpointing": False,
                      "gradient_accumulation_steps": 1}


@pytest.mark.parametrize("override, message", [
    ("compute.precision=int8", "compute.precision must be one of"),
    ("compute.device=tpu", "compute.device must be one of"),
    ("compute.gradient_accumulation_steps=0", "compute.gradient_accumulation_steps must be an integer >= 1"),
    ("compute.gradient_checkpointing=maybe", "compute.gradient_checkpointing must be true or false"),
    ("compute.zero_stage=3", "compute:.*zero_stage"),
    ("max_length=0", "max_length must be >= 1"),
    ("lora_rank=-4", "lora_rank must be >= 0"),
    ("group_by_length=maybe", "group_by_length must be true or false"),
    ("dataset.version=-1", "dataset version must be an integer >= 0"),
])
def test_bad_scale_values_are_rejected_naming_the_field(override, message):
    with pytest.raises(ValueError, match=message):
        SFTRecipe.from_dict(load_recipe(RECIPES / "llama3_8b_sft.yaml", [override]))


def test_fp16_on_cpu_is_rejected():
    with pytest.raises(ValueError, match="fp16 needs device cuda"):
        DPORecipe.from_dict(load_recipe(RECIPES / "llama3_8b_dpo.yaml", ["compute.device=cpu", "compute.precision=fp16"]))
