"""Held-out preference accuracy and margins, per objective, for a DPO policy or a reward model.

A DPO policy's implicit reward of a reply is β·(log π(reply|prompt) − log π_ref(reply|prompt));
a reward model scores the whole conversation directly. Either way a pair counts as right when
the chosen reply scores strictly higher than the rejected one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class PreferenceScore:
    pairs: int
    accuracy: float  # share of pairs whose chosen reply scores strictly higher
    mean_margin: float  # mean of score(chosen) - score(rejected)
    by_objective: dict[str, float] = field(default_factory=dict)  # accuracy per objective
    by_kind: dict[str, float] = field(default_factory=dict)  # accuracy per rejected-reply kind, where pairs name one

    def as_dict(self) -> dict:
        return {"pairs": self.pairs, "accuracy": self.accuracy, "mean_margin": self.mean_margin,
                "by_objective": dict(self.by_objective), "by_kind": dict(self.by_kind)}


def _messages(record: dict, side: str) -> list[dict]:
    return list(record["prompt"]) + list(record[side])


def reply_logprob(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, messages: list[dict],
                  max_length: int = 1024) -> float:
    """Sum of log-probabilities of the assistant tokens of the last turn (the reply)."""
    encoded = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True, truncation=True, max_length=max_length)
    ids = torch.tensor([encoded["input_ids"]])  # (1, T)
    mask = torch.tensor(encoded["assistant_masks"], dtype=torch.bool)[1:]  # (T-1,) predicted positions
    prompt_ids = tokenizer.apply_chat_template(messages[:-1], tokenize=True, add_generation_prompt=True,
                                               return_dict=True)["input_ids"]
    mask[: max(len(prompt_ids) - 1, 0)] = False  # earlier assistant turns are context, not the reply
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, :-1].float()  # (T-1, vocab)
    logp = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None])[:, 0]  # (T-1,)
    return float(logp[mask].sum())


def score_pairs(records: list[dict], score: Callable[[list[dict]], float]) -> PreferenceScore:
    """Accuracy and mean margin of `score(chosen conversation) - score(rejected conversation)`."""
    if not records:
        raise ValueError("records must hold at least one preference pair")
    margins: list[float] = []
    per_objective: dict[str, list[bool]] = defaultdict(list)
    per_kind: dict[str, list[bool]] = defaultdict(list)
    for record in records:
        margin = score(_messages(record, "chosen")) - score(_messages(record, "rejected"))
        margins.append(margin)
        per_objective[record.get("objective", "all")].append(margin > 0)
        if record.get("kind"):
            per_kind[record["kind"]].append(margin > 0)
    return PreferenceScore(
        pairs=len(records), accuracy=sum(m > 0 for m in margins) / len(margins),
        mean_margin=sum(margins) / len(margins),
        by_objective={o: sum(v) / len(v) for o, v in sorted(per_objective.items())},
        by_kind={k: sum(v) / len(v) for k, v in sorted(per_kind.items())},
    )


def dpo_preference_score(policy: PreTrainedModel, reference: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                         records: list[dict], beta: float, max_length: int = 1024) -> PreferenceScore:
    """Pairs judged by the policy's implicit reward against the reference model."""
    policy.eval()
    reference.eval()

    def implicit_reward(messages: list[dict]) -> float:
        return beta * (reply_logprob(policy, tokenizer, messages, max_length)
                       - reply_logprob(reference, tokenizer, messages, max_length))

    return score_pairs(records, implicit_reward)
