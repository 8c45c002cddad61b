"""Reward model (TRL RewardTrainer) and GRPO (TRL GRPOTrainer) on a tiny real Llama."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, set_seed

from chatstack.alignment.dpo import DPORecipe
from chatstack.alignment.grpo import GRPORecipe, prompt_records
from chatstack.alignment.grpo import main as grpo_main
from chatstack.alignment.preference_data import ObjectiveWeights, preference_records
from chatstack.alignment.preference_eval import dpo_preference_score, score_pairs
from chatstack.alignment.reward import RewardRecipe, conversation_reward
from chatstack.alignment.reward import main as reward_main
from chatstack.alignment.rule_rewards import cites_covering_passage, says_not_covered
from tests.unit.test_alignment import tiny_model  # noqa: F401  (module-scoped fixture)

WEIGHTS = ObjectiveWeights(helpfulness=0.5, safety=0.5)


def pairwise_loss(model, tokenizer, records: list[dict]) -> float:
    """Bradley–Terry loss of a reward model on fixed pairs."""
    margins = torch.tensor([conversation_reward(model, tokenizer, r["prompt"] + r["chosen"])
                            - conversation_reward(model, tokenizer, r["prompt"] + r["rejected"]) for r in records])
    return float(-torch.nn.functional.logsigmoid(margins).mean())


@pytest.fixture(scope="module")
def reward_model(tiny_model, tmp_path_factory) -> tuple[Path, dict]:  # noqa: F811
    out = tmp_path_factory.mktemp("reward") / "rm"
    summary = reward_main(RewardRecipe(base_model=tiny_model, output_dir=out, train_pairs=16, eval_pairs=8,
                                       batch_size=4, epochs=4, lr=1e-2, max_length=512, weights=WEIGHTS))
    return out, summary


def test_reward_training_changes_weights_and_lowers_pairwise_loss(tiny_model, reward_model):  # noqa: F811
    out, summary = reward_model
    assert summary["steps"] > 1 and 0 <= summary["held_out_pairwise_accuracy"] <= 1
    assert set(summary["held_out_accuracy_by_objective"]) <= {"helpfulness", "safety"}
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    fixed = preference_records(16, 0, WEIGHTS)  # the training pairs (same seed as the recipe)
    set_seed(0)  # the trainer seeds before it adds the random score head; same start here
    start = AutoModelForSequenceClassification.from_pretrained(str(tiny_model), num_labels=1).eval()
    start.config.pad_token_id = tokenizer.pad_token_id
    trained = AutoModelForSequenceClassification.from_pretrained(str(out), num_labels=1).eval()
    assert pairwise_loss(trained, tokenizer, fixed) < pairwise_loss(start, tokenizer, fixed)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model)).model.state_dict()
    tuned = trained.model.state_dict()
    assert any(not torch.equal(base[k], tuned[k]) for k in base)


def test_grpo_steps_with_reward_model_and_rules_change_the_policy(tiny_model, reward_model, tmp_path):  # noqa: F811
    out = tmp_path / "grpo"
    recipe = GRPORecipe.from_dict({
        "base_model": tiny_model, "output_dir": out, "reward_model": reward_model[0], "prompts": 8,
        "num_generations": 2, "prompts_per_step": 2, "max_completion_length": 8, "max_steps": 2, "lr": 1e-2,
        "eval_conversations": 2, "rewards": {"reward_model": 0.5, "cites_covering_passage": 1, "says_not_covered": 1}})
    summary = grpo_main(recipe)
    assert summary["steps"] == 2 and summary["mean_reward_last_step"] is not None
    assert summary["reward_functions"][0] == str(reward_model[0]) and len(summary["reward_weights"]) == 3
    before = AutoModelForCausalLM.from_pretrained(str(tiny_model)).state_dict()
    after = AutoModelForCausalLM.from_pretrained(str(out)).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_rule_rewards_follow_the_reading_rules():
    gold = ["[2]", "[2]", "[2]", "[2]", "", "", ""]
    replies = ["It returns a list. [2]", "It returns a list. [1]", "It returns a list.", "[1] [2]",
               "The documents I was given do not cover it.", "It does this. [1]", "Something."]
    completions = [[{"role": "assistant", "content": r}] for r in replies]
    assert cites_covering_passage(completions, gold) == [1.0, -1.0, 0.0, 0.5, 0.0, 0.0, 0.0]
    assert says_not_covered(completions, gold) == [0.0, 0.0, 0.0, 0.0, 1.0, -1.0, 0.0]
    assert says_not_covered(["The documents do not cover that. [2]"], ["[2]"]) == [-1.0]


def test_grpo_prompts_end_before_the_answer_and_carry_the_gold_citation():
    records = prompt_records(20, 0, unanswerable=0.5)
    assert all(r["prompt"][-1]["role"] == "user" for r in records)
    assert any(r["gold_citation"] == "" for r in records) and any(r["gold_citation"] for r in records)
    for record in records:
        if record["gold_citation"]:
            n = record["gold_citation"].strip("[]")
            assert f'<reference n="{n}"' in record["prompt"][0]["content"]  # the passage it cites is shown


def test_preference_scores_count_strict_wins_per_objective(tiny_model):  # noqa: F811
    records = [{"objective": "a", "chosen": [{"content": "x"}], "rejected": [{"content": "yy"}], "prompt": [],
                "kind": "drift"},
               {"objective": "b", "chosen": [{"content": "zzz"}], "rejected": [{"content": "w"}], "prompt": []}]
    score = score_pairs(records, lambda messages: -len(messages[-1]["content"]))
    assert score.accuracy == 0.5 and score.by_objective == {"a": 1.0, "b": 0.0} and score.mean_margin == -0.5
    assert score.by_kind == {"drift": 1.0}  # only pairs that name their kind
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    same = dpo_preference_score(model, model, tokenizer, preference_records(4, 0, WEIGHTS), beta=0.1)
    assert same.accuracy == 0.0 and same.mean_margin == 0.0  # policy == reference: every reward is 0


@pytest.mark.parametrize(("raw", "field"), [({"lr": 0}, "lr"), ({"train_pairs": 0}, "train_pairs"),
                                            ({"center_rewards_coefficient": -1}, "center_rewards_coefficient"),
                                            ({"bogus": 1}, "bogus")])
def test_bad_reward_recipe_values_are_rejected(raw, field):
    with pytest.raises(ValueError, match=field):
        RewardRecipe.from_dict({"base_model": "a", "output_dir": "b", **raw})


@pytest.mark.parametrize(("raw", "field"), [
    ({"num_generations": 1}, "num_generations"), ({"unanswerable": 2}, "unanswerable"), ({"beta": -1}, "beta"),
    ({"max_steps": 0}, "max_steps"), ({"rewards": {"reward_model": 1}}, "reward_model"),
    ({"rewards": {"cites_covering_passage": -1}}, "reward weights"), ({"rewards": {"bleu": 1}}, "rewards"),
])
def test_bad_grpo_recipe_values_are_rejected(raw, field):
    with pytest.raises(ValueError, match=field):
        GRPORecipe.from_dict({"base_model": "a", "output_dir": "b", **raw})


@pytest.mark.parametrize(("raw", "field"), [
    ({"loss_type": ["sigmoid", "kto"]}, "loss_type"), ({"loss_type": []}, "loss_type"),
    ({"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0]}, "loss_weights"),
    ({"lr_scheduler": "step"}, "lr_scheduler"), ({"warmup_ratio": 1.0}, "warmup_ratio"),
])
def test_bad_dpo_loss_settings_are_rejected(raw, field):
    with pytest.raises(ValueError, match=field):
        DPORecipe.from_dict({"base_model": "a", "output_dir": "b", **raw})


def test_train_and_held_out_pairs_share_no_text():
    """Held-out accuracy must measure unseen topics: no reply or request of a held-out pair is trained on."""
    from chatstack.alignment.served_chunks import NOT_COVERED
    from chatstack.safety.rules import REFUSAL

    def texts(records: list[dict]) -> set[str]:  # less the two fixed replies every safety pair chooses between
        return {r[side][-1]["content"] for r in records for side in ("prompt", "chosen", "rejected")} - {
            REFUSAL, NOT_COVERED}

    train = preference_records(300, 0, WEIGHTS)
    held_out = preference_records(60, 1, WEIGHTS, held_out=True)
    assert not texts(train) & texts(held_out)


def test_the_reader_evaluation_asks_each_kind_of_conversation_the_recipe_trains(tiny_model):  # noqa: F811
    from chatstack.alignment.reader_eval import evaluate_loaded_reader

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    score = evaluate_loaded_reader(model, tokenizer, count=30, max_new_tokens=2, passages="chunks",
                                   no_passages=0.2, refusal=0.3)
    assert score.answerable and score.unanswerable and score.unsafe
    assert score.answerable + score.unanswerable + score.unsafe == 30 and score.refused == 0.0  # 2 tokens: no refusal


def test_the_reader_evaluation_can_decode_as_the_deployment_does(tiny_model, monkeypatch):  # noqa: F811
    from chatstack.alignment.reader_eval import evaluate_loaded_reader
    from chatstack.config import GenerationSection
    from chatstack.rag import passage_copy

    built, real = [], passage_copy.copy_constraint

    def recording(tokenizer, text, ids, passages, enter_after):
        constraint = real(tokenizer, text, ids, passages, enter_after)
        built.append((len(passages), constraint, enter_after))
        return constraint

    monkeypatch.setattr(passage_copy, "copy_constraint", recording)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    quote_bound = GenerationSection(copy_from_passages=True, copy_enter_after=1, default_frequency_penalty=0.5)
    score = evaluate_loaded_reader(model, tokenizer, count=12, max_new_tokens=3, passages="chunks",
                                   no_passages=0.3, decoding=quote_bound)
    assert score.answerable + score.unanswerable == 12 and len(built) == 12
    assert any(n == 0 for n, _, _ in built) and any(n for n, _, _ in built)
    assert all((constraint is not None) == (n > 0) for n, constraint, _ in built)  # every fence read back
    assert {enter for _, _, enter in built} == {1}
    built.clear()
    evaluate_loaded_reader(model, tokenizer, count=4, max_new_tokens=2, passages="chunks",
                           decoding=GenerationSection(copy_from_passages=False))
    assert built == []
