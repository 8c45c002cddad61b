"""DPO preference metrics of a policy against its reference on held-out preference pairs.

The implicit DPO reward of a completion y for prompt x is β·(log π(y|x) − log π_ref(y|x)),
summed over the completion's tokens, as TRL's DPOTrainer computes it. A pair is ranked
correctly when the chosen completion's reward exceeds the rejected one's; the margin is
the chosen reward minus the rejected reward. The pairs are the ones DPO held out
(`preference_records(..., held_out=True)` with the recipe's `seed + 1`), so the figures
are comparable with `dpo_summary.json`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from chatstack.alignment.dpo import DPORecipe
from chatstack.alignment.preference_data import ObjectiveWeights, preference_records
from chatstack.evaluation.models import LoadedModel
from chatstack.text.chat_template import Message, render_chat


@dataclass(frozen=True)
class PreferenceSet:
    """Which held-out pairs, and the β of the implicit reward; defaults follow DPORecipe."""

    pairs: int = DPORecipe.__dataclass_fields__["eval_pairs"].default
    seed: int = DPORecipe.__dataclass_fields__["seed"].default + 1  # DPO holds out seed + 1
    beta: float = DPORecipe.__dataclass_fields__["beta"].default
    weights: ObjectiveWeights = ObjectiveWeights()

    def __post_init__(self) -> None:
        if self.pairs < 1:
            raise ValueError(f"pairs must be >= 1, got {self.pairs}")
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")

    def records(self) -> list[dict]:
        return preference_records(self.pairs, self.seed, self.weights, held_out=True)


@dataclass(frozen=True)
class PreferenceScore:
    reference: str
    pairs: int
    accuracy: float  # share of pairs whose chosen reward > rejected reward
    mean_margin: float  # mean of (chosen reward − rejected reward)
    mean_chosen_reward: float
    mean_rejected_reward: float
    accuracy_by_objective: dict[str, float]


def completion_logprob(loaded: LoadedModel, prompt: list[Message], reply: str) -> float:
    """Sum of log π(reply tokens | prompt) with the chat template the model was trained on."""
    tokenizer = loaded.tokenizer
    prompt_text = render_chat(prompt)
    completion_text = render_chat([*prompt, Message("assistant", reply)], add_generation_prompt=False)[len(prompt_text):]
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False, verbose=False)["input_ids"]
    completion_ids = tokenizer(completion_text, add_special_tokens=False, verbose=False)["input_ids"]
    keep = max(1, loaded.max_positions - len(completion_ids))
    ids = torch.tensor([prompt_ids[-keep:] + completion_ids])  # (1, T); long prompts lose their start
    with torch.inference_mode():
        logprobs = torch.log_softmax(loaded.model(input_ids=ids).logits[0, :-1].float(), dim=-1)  # (T-1, V)
    targets = ids[0, 1:]
    token_logprobs = logprobs.gather(1, targets[:, None])[:, 0]
    return float(token_logprobs[-len(completion_ids):].sum())


def _messages(records: list[dict]) -> list[Message]:
    return [Message(r["role"], r["content"]) for r in records]


def preference_score(policy: LoadedModel, reference: LoadedModel, pairs: PreferenceSet) -> PreferenceScore:
    chosen_rewards, rejected_rewards, by_objective = [], [], {}
    for record in pairs.records():
        prompt = _messages(record["prompt"])
        rewards = []
        for key in ("chosen", "rejected"):
            reply = record[key][0]["content"]
            rewards.append(pairs.beta * (completion_logprob(policy, prompt, reply)
                                         - completion_logprob(reference, prompt, reply)))
        chosen_rewards.append(rewards[0])
        rejected_rewards.append(rewards[1])
        by_objective.setdefault(record["objective"], []).append(rewards[0] > rewards[1])
    count = len(chosen_rewards)
    margins = [c - r for c, r in zip(chosen_rewards, rejected_rewards)]
    return PreferenceScore(
        reference=str(reference.path), pairs=count,
        accuracy=sum(m > 0 for m in margins) / count, mean_margin=sum(margins) / count,
        mean_chosen_reward=sum(chosen_rewards) / count, mean_rejected_reward=sum(rejected_rewards) / count,
        accuracy_by_objective={k: sum(v) / len(v) for k, v in sorted(by_objective.items())},
    )
