"""Preference pairs over chunks shaped as the demo deployment retrieves them (no model needed)."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from chatstack import project
from chatstack.alignment.dpo import DPORecipe
from chatstack.alignment.preference_data import ObjectiveWeights, preference_records
from chatstack.alignment.reader_data import SYSTEM_PROMPT
from chatstack.alignment.served_chunks import NOT_COVERED
from chatstack.alignment.served_pairs import drifted, served_preference_pairs
from chatstack.config import load_config
from chatstack.recipes import load_recipe

_REFERENCE = re.compile(r'<reference n="(\d+)" source="(.*?)">\n(.*?)\n</reference>', re.DOTALL)


def shown(record: dict) -> dict[int, tuple[str, str]]:
    return {int(n): (label, " ".join(text.split()))
            for n, label, text in _REFERENCE.findall(record["prompt"][0]["content"])}


def reply(record: dict, side: str) -> tuple[str, int | None]:
    text = record[side][0]["content"]
    if " [" not in text:
        return text, None
    body, citation = text.rsplit(" [", 1)
    return " ".join(body.split()), int(citation.rstrip("]"))


@pytest.fixture(scope="module")
def pairs() -> list[dict]:
    return served_preference_pairs(240, random.Random(0), held_out=False, chunk_tokens=120, chunk_overlap_tokens=24)


def test_drift_keeps_the_opening_then_runs_on_into_other_words():
    rng = random.Random(1)
    answer = "The while statement is used for repeated execution as long as an expression is true."
    donor = "Names are bound to objects by assignment and the scope of a name is the block that defines it."
    for _ in range(20):
        text = drifted(rng, answer, donor)
        words = text.split()
        assert len(words) == len(answer.split()) and text.endswith(".") and text != answer
        assert words[:2] == answer.split()[:2] and " ".join(words[-3:]).rstrip(".") in donor
    assert drifted(rng, "Too short.", donor) == "" and drifted(rng, answer, "few words") == ""


def test_not_covered_is_chosen_about_as_often_as_it_is_rejected(pairs):
    kinds = Counter(p["kind"] for p in pairs)
    assert set(kinds) == {"uncovered", "no_passages", "drift", "wrong_chunk", "declined"}
    assert min(kinds.values()) >= 20
    chosen = sum(p["chosen"][0]["content"] == NOT_COVERED for p in pairs)
    rejected = sum(p["rejected"][0]["content"] == NOT_COVERED for p in pairs)
    assert chosen == kinds["uncovered"] + kinds["no_passages"] and rejected == kinds["declined"]
    assert abs(chosen - rejected) <= 30


def test_covered_pairs_choose_the_quote_of_the_cited_chunk_and_reject_what_the_kind_says(pairs):
    for pair in (p for p in pairs if p["kind"] not in ("uncovered", "no_passages")):
        passages = shown(pair)
        text, n = reply(pair, "chosen")
        assert text in passages[n][1]
        rejected, m = reply(pair, "rejected")
        if pair["kind"] == "declined":
            assert rejected == NOT_COVERED and m is None
        elif pair["kind"] == "drift":
            assert m == n and rejected != text and rejected.split()[:2] == text.split()[:2]
            assert len(rejected.split()) == len(text.split()) and rejected not in passages[n][1]
        else:
            assert m != n and rejected in passages[m][1]


def test_every_pair_names_its_section_and_uncovered_pairs_show_no_chunk_of_it(pairs):
    for pair in pairs:
        labels = [label for label, _ in shown(pair).values()]
        if pair["kind"] == "no_passages":
            assert not labels and pair["prompt"][0]["content"] == SYSTEM_PROMPT
            assert pair["chosen"][0]["content"] == NOT_COVERED and pair["rejected"][0]["content"] != NOT_COVERED
        elif pair["kind"] == "uncovered":
            assert pair["chosen"][0]["content"] == NOT_COVERED and pair["section"] not in labels
            rejected, m = reply(pair, "rejected")
            assert rejected in shown(pair)[m][1]
        else:
            assert labels[reply(pair, "chosen")[1] - 1] == pair["section"]


def test_training_and_held_out_pairs_cite_different_sections():
    def cited(records):
        return {shown(p)[reply(p, "chosen")[1]][0] for p in records if reply(p, "chosen")[1]}

    train = cited(served_preference_pairs(200, random.Random(0), held_out=False))
    held = cited(served_preference_pairs(60, random.Random(1), held_out=True))
    assert train and held and not train & held


def test_served_records_mix_safety_pairs_by_weight_for_training_and_held_out_alike():
    for held_out in (False, True):
        records = preference_records(100, 0, ObjectiveWeights(0.8, 0.2), held_out=held_out,
                                     construction="served_chunks", chunking=(120, 24))
        objectives = Counter(r["objective"] for r in records)
        assert len(records) == 100 and 8 <= objectives["safety"] <= 35
        assert all(r.get("kind") for r in records if r["objective"] == "helpfulness")


def test_served_chunk_pairs_from_the_demo_dpo_recipe_read_the_demo_deployments_chunks():
    raw = load_recipe(project.ROOT / "training" / "recipes" / "demo_dpo.yaml") | {"pair_construction": "served_chunks"}
    recipe = DPORecipe.from_dict(raw)
    retrieval = load_config(project.ROOT / "deploy" / "demo.toml").retrieval
    assert (recipe.chunk_tokens, recipe.chunk_overlap_tokens) == (retrieval.chunk_tokens, retrieval.chunk_overlap_tokens)


@pytest.mark.parametrize("raw", [{"chunk_tokens": 8}, {"chunk_tokens": 100, "chunk_overlap_tokens": 60}])
def test_bad_dpo_chunking_is_rejected(raw):
    with pytest.raises(ValueError, match="chunk_tokens"):
        DPORecipe.from_dict({"base_model": "a", "output_dir": "b", **raw})
