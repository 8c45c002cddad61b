"""SFT/DPO training sets as dataset versions: committed, pinned, and recorded in lineage.json."""

from __future__ import annotations

import json

import pytest

from chatstack.alignment.dpo import DPORecipe
from chatstack.alignment.sft import SFTRecipe
from chatstack.alignment.sft import main as sft_main
from chatstack.alignment.versioned_sets import dpo_pairs, sft_conversations
from chatstack.datasets import DatasetKind, DatasetRef, VersionedTable, read_lineage
from tests.unit.test_alignment import tiny_model  # noqa: F401  (fixture: a 1-layer Llama + tokenizer)

PAIR = {"prompt": [{"role": "user", "content": "What is a tuple?"}],
        "chosen": [{"role": "assistant", "content": "An immutable sequence [1]."}],
        "rejected": [{"role": "assistant", "content": "No idea."}], "source": "correction"}


def test_sft_set_is_committed_once_and_a_pinned_version_is_used_as_is(tmp_path):
    ref = {"uri": str(tmp_path / "sft")}
    recipe = SFTRecipe(base_model=tmp_path, output_dir=tmp_path / "out", train_conversations=6, eval_conversations=3,
                       dataset=ref)
    train, held_out, used = sft_conversations(recipe)
    assert (len(train), len(held_out), used["conversations"].version) == (6, 3, 0)
    assert sft_conversations(recipe)[2]["conversations"].version == 0  # same seed, same content: no new version
    bigger = SFTRecipe(base_model=tmp_path, output_dir=tmp_path / "out", train_conversations=8, eval_conversations=3,
                       dataset=ref)
    assert sft_conversations(bigger)[2]["conversations"].version == 1
    pinned = SFTRecipe(base_model=tmp_path, output_dir=tmp_path / "out", train_conversations=8, eval_conversations=3,
                       dataset={**ref, "version": 0})
    again, _, pinned_used = sft_conversations(pinned)
    assert again == train and pinned_used["conversations"].version == 0
    assert len(VersionedTable(ref["uri"], DatasetKind.CONVERSATIONS).history()) == 2


def test_dpo_reads_the_latest_feedback_export_as_training_pairs(tmp_path):
    feedback = VersionedTable(tmp_path / "feedback", DatasetKind.PREFERENCES)
    recipe = DPORecipe(base_model=tmp_path, output_dir=tmp_path / "out", train_pairs=4, eval_pairs=2,
                       dataset=str(tmp_path / "pairs"), feedback_dataset=str(tmp_path / "feedback"))
    train, held_out, used = dpo_pairs(recipe)  # no export yet: no feedback pairs, no feedback version
    assert (len(train), len(held_out), sorted(used)) == (4, 2, ["preferences"])
    feedback.write([{"split": "train", **PAIR}])
    feedback.write([{"split": "train", **PAIR}, {"split": "train", **PAIR, "source": "rating"}])
    train, _, used = dpo_pairs(recipe)
    assert [r["objective"] for r in train].count("feedback") == 2 and used["feedback"].version == 1
    assert train[-1]["chosen"] == PAIR["chosen"]


def test_bad_dataset_values_in_a_recipe_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="dataset version must be an integer >= 0"):
        SFTRecipe.from_dict({"base_model": "m", "output_dir": "o", "dataset": {"uri": "d", "version": -2}})
    with pytest.raises(ValueError, match="unknown dataset key"):
        DPORecipe.from_dict({"base_model": "m", "output_dir": "o", "feedback_dataset": {"path": "d"}})


def test_sft_run_records_the_dataset_version_it_trained_on(tiny_model, tmp_path):  # noqa: F811
    out = tmp_path / "sft"
    sft_main(SFTRecipe(base_model=tiny_model, output_dir=out, train_conversations=8, eval_conversations=2,
                       batch_size=4, epochs=1, max_length=1024, time_budget_s=60,
                       dataset=DatasetRef(str(tmp_path / "sft-set"))))
    lineage = read_lineage(out)
    assert lineage["conversations"].version == 0 and lineage["conversations"].rows == 10
    assert lineage["conversations"].content_hash == VersionedTable(
        tmp_path / "sft-set", DatasetKind.CONVERSATIONS).latest().content_hash
    assert json.loads((out / "lineage.json").read_text())["stage"] == "sft"
