"""The SFT and DPO training sets as versioned datasets.

Without a `dataset` in the recipe a stage trains on sets generated from its seed, as
before. With one, the generated set is committed as a version (no new version when the
content is unchanged) and training reads that version back; with a pinned
`dataset.version` nothing is generated and the stage trains on exactly that version.
Either way the versions used are returned for the run's `lineage.json`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chatstack.alignment.preference_data import feedback_records, preference_records
from chatstack.alignment.reader_data import reader_conversations
from chatstack.datasets import DatasetKind, DatasetVersion, read_latest, resolve_dataset
from chatstack.text.chat_template import Message

if TYPE_CHECKING:
    from chatstack.alignment.dpo import DPORecipe
    from chatstack.alignment.sft import SFTRecipe

Conversation = list[Message]


def _split(records: list[dict], name: str) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "split"} for r in records if r["split"] == name]


def _labelled(records: list[dict], split: str) -> list[dict]:
    return [{"split": split, **r} for r in records]


def sft_conversations(recipe: "SFTRecipe") -> tuple[list[Conversation], list[Conversation], dict[str, DatasetVersion]]:
    """(train, held-out) conversations and the dataset versions they came from."""
    def generate() -> tuple[list[Conversation], list[Conversation]]:
        return (reader_conversations(recipe.train_conversations, recipe.seed, recipe.mix),
                reader_conversations(recipe.eval_conversations, recipe.seed + 1, recipe.mix, held_out=True))

    if recipe.dataset is None:
        return *generate(), {}

    def build() -> list[dict]:
        train, held_out = generate()
        as_records = [[{"role": m.role, "content": m.content} for m in c] for c in train + held_out]
        return [{"split": "train" if i < len(train) else "eval", "messages": messages}
                for i, messages in enumerate(as_records)]

    records, version = resolve_dataset(recipe.dataset, DatasetKind.CONVERSATIONS, build, {
        "stage": "sft", "seed": recipe.seed, "train_conversations": recipe.train_conversations,
        "eval_conversations": recipe.eval_conversations, "mix": recipe.mix})

    def conversations(split: str) -> list[Conversation]:
        return [[Message(m["role"], m["content"]) for m in r["messages"]] for r in _split(records, split)]

    return conversations("train"), conversations("eval"), {"conversations": version}


def dpo_pairs(recipe: "DPORecipe") -> tuple[list[dict], list[dict], dict[str, DatasetVersion]]:
    """(train, held-out) preference records (with `objective`) and the dataset versions used.

    Feedback pairs come from the JSONL export (`feedback_pairs`) and/or the versioned
    export (`feedback_dataset`, latest or pinned); both are training pairs only.
    """
    used: dict[str, DatasetVersion] = {}

    def build() -> list[dict]:
        shape = {"construction": recipe.pair_construction,
                 "chunking": (recipe.chunk_tokens, recipe.chunk_overlap_tokens)}
        return (_labelled(preference_records(recipe.train_pairs, recipe.seed, recipe.weights, **shape), "train")
                + _labelled(preference_records(recipe.eval_pairs, recipe.seed + 1, recipe.weights, held_out=True,
                                               **shape), "eval"))

    if recipe.dataset is None:
        records = build()
    else:
        records, used["preferences"] = resolve_dataset(recipe.dataset, DatasetKind.PREFERENCES, build, {
            "stage": "dpo", "seed": recipe.seed, "train_pairs": recipe.train_pairs,
            "eval_pairs": recipe.eval_pairs, "weights": recipe.weights,
            "pair_construction": recipe.pair_construction.value, "chunk_tokens": recipe.chunk_tokens,
            "chunk_overlap_tokens": recipe.chunk_overlap_tokens})
    train, held_out = _split(records, "train"), _split(records, "eval")
    if recipe.feedback_pairs is not None:
        train += feedback_records(recipe.feedback_pairs)
    if recipe.feedback_dataset is not None:
        feedback, version = read_latest(recipe.feedback_dataset, DatasetKind.PREFERENCES)
        train += [{k: r[k] for k in ("prompt", "chosen", "rejected")} | {"objective": "feedback"} for r in feedback]
        if version is not None:
            used["feedback"] = version
    return train, held_out, used
