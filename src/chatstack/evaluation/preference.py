"""DPO preference metrics of a policy against its reference on held-out preference pairs.

The scoring is `alignment.preference_eval.dpo_preference_score` (implicit reward
β·(log π − log π_ref) of the reply, chosen minus rejected); this module picks the pairs
and the reference for `chatstack eval model`. The pairs are the ones DPO held out
(`preference_records(..., held_out=True)` with the recipe's `seed + 1`), so the figures
are comparable with `dpo_summary.json`.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatstack.alignment.dpo import DPORecipe
from chatstack.alignment.preference_data import ObjectiveWeights, preference_records
from chatstack.alignment.preference_eval import dpo_preference_score
from chatstack.evaluation.models import LoadedModel


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
class PreferenceResult:
    reference: str  # the model folder the implicit reward is measured against
    pairs: int
    accuracy: float  # share of pairs whose chosen reward > rejected reward
    mean_margin: float  # mean of (chosen reward − rejected reward)
    accuracy_by_objective: dict[str, float]


def preference_score(policy: LoadedModel, reference: LoadedModel, pairs: PreferenceSet) -> PreferenceResult:
    """Held-out DPO preference accuracy and mean reward margin of `policy` against `reference`."""
    score = dpo_preference_score(policy.model, reference.model, policy.tokenizer, pairs.records(), pairs.beta,
                                 max_length=min(policy.max_positions, reference.max_positions))
    return PreferenceResult(str(reference.path), score.pairs, score.accuracy, score.mean_margin,
                            dict(score.by_objective))
