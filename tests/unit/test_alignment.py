"""SFT and DPO on a tiny real model: a few TRL steps change the weights and lower the loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM, LlamaModel

from chatstack.alignment.chat_loss import assistant_token_loss
from chatstack.alignment.dpo import DPORecipe
from chatstack.alignment.dpo import main as dpo_main
from chatstack.alignment.preference_data import ObjectiveWeights, preference_records
from chatstack.alignment.reader_data import ReaderMix, reader_conversations
from chatstack.alignment.sft import SFTRecipe
from chatstack.alignment.sft import main as sft_main
from chatstack.alignment.time_budget import TimeBudget
from chatstack.model.architecture import TinyLlamaSpec, to_llama_config
from chatstack.model.corpus import documents
from chatstack.model.tokenizer import MIN_VOCAB_SIZE, train_tokenizer
from chatstack.text.chat_template import render_chat


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-base")
    texts = documents(max_chars=200_000) + [render_chat(c, False) for c in reader_conversations(50, 3)]
    tokenizer = train_tokenizer(texts, vocab_size=max(MIN_VOCAB_SIZE, 512))
    spec = TinyLlamaSpec(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
                         max_position_embeddings=1024)
    torch.manual_seed(0)
    LlamaForCausalLM(to_llama_config(spec, tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(str(folder)).state_dict().items()}


def test_reader_data_is_split_by_topic():
    train = {c[-2].content for c in reader_conversations(200, 0, ReaderMix(refusal=0, unanswerable=0, multi_turn=0))}
    held = {c[-2].content for c in reader_conversations(50, 0, ReaderMix(refusal=0, unanswerable=0, multi_turn=0),
                                                        held_out=True)}
    assert train and held and not train & held


def test_quote_conversations_copy_the_covering_passage_and_cite_it():
    conversations = reader_conversations(60, 0, ReaderMix(refusal=0, unanswerable=0, multi_turn=0, quote=1.0))
    for system, question, answer in conversations:
        assert question.content.startswith("Quote what the references say about")
        text, citation = answer.content.rsplit(" [", 1)
        n = int(citation.rstrip("]"))
        shown = system.content.split(f'<reference n="{n}"', 1)[1].split("</reference>", 1)[0]
        assert " ".join(text.split()) == " ".join(shown.split("\n", 1)[1].split())


def test_sft_steps_change_weights_and_lower_assistant_loss(tiny_model, tmp_path):
    out = tmp_path / "sft"
    summary = sft_main(SFTRecipe(base_model=tiny_model, output_dir=out, train_conversations=16, eval_conversations=16,
                                 batch_size=4, epochs=6, lr=1e-2, max_length=512, time_budget_s=120))
    assert summary["steps"] > 1
    before, after = weights(tiny_model), weights(out)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    fixed = reader_conversations(16, 0)  # the training conversations (same seed as the recipe)
    base = assistant_token_loss(AutoModelForCausalLM.from_pretrained(str(tiny_model)), tokenizer, fixed, 512)
    tuned = assistant_token_loss(AutoModelForCausalLM.from_pretrained(str(out)), tokenizer, fixed, 512)
    assert tuned < base
    assert json.loads((out / "sft_summary.json").read_text())["steps"] == summary["steps"]


def test_sft_runs_one_forward_pass_per_training_step(tiny_model, tmp_path, monkeypatch):
    """The loss and the token accuracy come from the step's own forward (TRL's `compute_loss_func` path added a
    gradient-free second one each step)."""
    calls = {"with_grad": 0, "without_grad": 0}
    forward = LlamaModel.forward  # the decoder body: TRL's fused LM head calls it without the causal-LM wrapper

    def counted(self, *args, **kwargs):
        if self.training:
            calls["with_grad" if torch.is_grad_enabled() else "without_grad"] += 1
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(LlamaModel, "forward", counted)
    summary = sft_main(SFTRecipe(base_model=tiny_model, output_dir=tmp_path / "sft", train_conversations=8,
                                 eval_conversations=4, batch_size=4, epochs=2, lr=1e-2, max_length=512,
                                 time_budget_s=120))
    assert summary["steps"] >= 2
    assert calls == {"with_grad": summary["steps"], "without_grad": 0}


def test_lora_sft_saves_a_merged_model(tiny_model, tmp_path):
    out = tmp_path / "lora"
    sft_main(SFTRecipe(base_model=tiny_model, output_dir=out, train_conversations=8, eval_conversations=4,
                       batch_size=4, epochs=3, lr=1e-2, max_length=512, lora_rank=4, time_budget_s=120))
    assert (out / "config.json").exists() and not (out / "adapter_config.json").exists()
    assert any(not torch.equal(a, b) for a, b in zip(weights(tiny_model).values(), weights(out).values()))


def test_dpo_steps_change_weights_and_raise_the_chosen_margin(tiny_model, tmp_path):
    out = tmp_path / "dpo"
    summary = dpo_main(DPORecipe(base_model=tiny_model, output_dir=out, train_pairs=16, eval_pairs=8, batch_size=4,
                                 epochs=4, lr=3e-3, max_length=512, time_budget_s=120,
                                 weights=ObjectiveWeights(helpfulness=0.5, safety=0.5)))
    # below log(2), the loss at zero margin (lr 1e-2 overshot once the safety pairs became contrastive: the same
    # two replies chosen and rejected by turns, told apart only by the request)
    assert summary["steps"] > 1 and summary["train_loss"] < 0.6931
    assert any(not torch.equal(a, b) for a, b in zip(weights(tiny_model).values(), weights(out).values()))
    assert summary["objectives"]["safety"] > 0 and summary["objectives"]["helpfulness"] > 0


def test_preference_mix_follows_the_weights():
    records = preference_records(200, 0, ObjectiveWeights(helpfulness=0.75, safety=0.25))
    safety = sum(r["objective"] == "safety" for r in records)
    assert 25 <= safety <= 75
    assert all(r["chosen"] != r["rejected"] for r in records)


def test_dpo_trains_only_the_named_modules(tiny_model, tmp_path):
    out = tmp_path / "dpo-vo"
    summary = dpo_main(DPORecipe(base_model=tiny_model, output_dir=out, train_pairs=8, eval_pairs=4, batch_size=4,
                                 lr=1e-2, max_length=1024, trainable_modules=("v_proj", "o_proj"),
                                 pair_construction="mirrored", weights=ObjectiveWeights(helpfulness=0.5, safety=0.5)))
    before, after = weights(tiny_model), weights(out)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("v_proj" in k or "o_proj" in k for k in changed)
    assert summary["pair_construction"] == "mirrored"


@pytest.mark.parametrize(("raw", "field"), [({"lr": -1}, "lr"), ({"batch_size": 0}, "batch_size"),
                                            ({"bogus": 1}, "bogus"), ({"lora_rank": -2}, "lora_rank"),
                                            ({"checkpoint_steps": -1}, "checkpoint_steps"),
                                            ({"checkpoint_steps": 2.5}, "checkpoint_steps")])
def test_bad_sft_recipe_values_are_rejected(raw, field):
    with pytest.raises(ValueError, match=field):
        SFTRecipe.from_dict({"base_model": "a", "output_dir": "b", **raw})


@pytest.mark.parametrize(("raw", "field"), [({"beta": 0}, "beta"), ({"weights": {"helpfulness": -1}}, "weights"),
                                            ({"train_pairs": 0}, "train_pairs"),
                                            ({"checkpoint_steps": -5}, "checkpoint_steps")])
def test_bad_dpo_recipe_values_are_rejected(raw, field):
    with pytest.raises(ValueError, match=field):
        DPORecipe.from_dict({"base_model": "a", "output_dir": "b", **raw})


class _StoppedAtStep(TimeBudget):
    """Interrupts training at the end of step `at`, as a killed run would stop, before that step's checkpoint."""

    at = 3

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise KeyboardInterrupt
        return super().on_step_end(args, state, control, **kwargs)


class _CountingSteps(TimeBudget):
    steps = 0

    def on_step_end(self, args, state, control, **kwargs):
        type(self).steps += 1
        return super().on_step_end(args, state, control, **kwargs)


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_an_interrupted_stage_resumes_from_its_last_checkpoint(stage, tiny_model, tmp_path, monkeypatch):
    from chatstack.alignment import time_budget

    def run(out):
        if stage == "sft":
            return sft_main(SFTRecipe(base_model=tiny_model, output_dir=out, train_conversations=24,
                                      eval_conversations=4, batch_size=4, epochs=2, lr=1e-2, max_length=512,
                                      time_budget_s=120, checkpoint_steps=2))
        return dpo_main(DPORecipe(base_model=tiny_model, output_dir=out, train_pairs=16, eval_pairs=4, batch_size=4,
                                  epochs=2, lr=3e-3, max_length=512, time_budget_s=120, checkpoint_steps=2,
                                  weights=ObjectiveWeights(helpfulness=0.5, safety=0.5)))

    straight = run(tmp_path / "straight")
    assert straight["resumed_from_step"] == 0 and straight["steps"] > 3
    out = tmp_path / stage
    monkeypatch.setattr(time_budget, "TimeBudget", _StoppedAtStep)
    with pytest.raises(KeyboardInterrupt):
        run(out)
    trainer_dir = tmp_path / f"{stage}.partial" / "trainer"
    assert sorted(p.name for p in trainer_dir.glob("checkpoint-*")) == ["checkpoint-2"]
    monkeypatch.setattr(time_budget, "TimeBudget", _CountingSteps)
    _CountingSteps.steps = 0
    resumed = run(out)
    assert resumed["resumed_from_step"] == 2 and resumed["steps"] == straight["steps"]
    assert _CountingSteps.steps == straight["steps"] - 2  # only the steps after the checkpoint ran again
    assert (out / "config.json").is_file() and not (tmp_path / f"{stage}.partial").exists()
    for name, tensor in weights(tmp_path / "straight").items():
        torch.testing.assert_close(weights(out)[name], tensor, rtol=1e-4, atol=1e-5, msg=name)


def test_a_checkpoint_of_another_recipe_is_cleared_not_resumed(tmp_path):
    from chatstack.alignment.resume import resume_point

    recipe = SFTRecipe(base_model="a", output_dir=tmp_path / "out", lr=1e-3)
    trainer_dir = tmp_path / "trainer"
    assert resume_point(trainer_dir, recipe) is None
    (trainer_dir / "checkpoint-4").mkdir()
    (trainer_dir / "checkpoint-4" / "trainer_state.json").write_text("{}")
    budget_changed = SFTRecipe(base_model="a", output_dir=tmp_path / "elsewhere", lr=1e-3, time_budget_s=999)
    assert resume_point(trainer_dir, budget_changed) == str(trainer_dir / "checkpoint-4")
    assert resume_point(trainer_dir, SFTRecipe(base_model="a", output_dir=tmp_path / "out", lr=2e-3)) is None
    assert not (trainer_dir / "checkpoint-4").exists()
