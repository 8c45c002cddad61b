"""How training and held-out preference pairs are built (no model needed)."""

from __future__ import annotations

from collections import Counter

import pytest

from chatstack.alignment.dpo import DPORecipe
from chatstack.alignment.preference_data import EVAL_FRACTION, ObjectiveWeights, PairConstruction, preference_records
from chatstack.alignment.reader_data import is_held_out
from chatstack.model.corpus import titled_documents

WEIGHTS = ObjectiveWeights(helpfulness=0.8, safety=0.2)


def words(text: str) -> str:
    return " ".join(text.split())


def reply_text(record: dict, side: str) -> str:
    return words(record[side][0]["content"].rsplit(" [", 1)[0])  # the reply without its citation


def test_mirrored_pairs_choose_and_reject_every_reply_text_equally_often():
    """Only the prompt can tell chosen from rejected: no reply text is more often chosen than rejected."""
    records = preference_records(200, 0, WEIGHTS, construction=PairConstruction.MIRRORED)
    balance = Counter()  # by the reply's first words: the wrong reply is cut to the right one's length
    for record in (r for r in records if r["objective"] == "helpfulness"):
        balance[" ".join(reply_text(record, "chosen").split()[:4])] += 1
        balance[" ".join(reply_text(record, "rejected").split()[:4])] -= 1
        shown = words(record["prompt"][0]["content"])
        assert reply_text(record, "chosen") in shown and reply_text(record, "rejected") not in shown
    assert balance and sum(v != 0 for v in balance.values()) <= 2  # an odd count leaves one pair unmirrored
    assert 20 <= sum(r["objective"] == "safety" for r in records) <= 60


def test_mirrored_training_prompts_show_no_held_out_document():
    held_out_titles = {d.title for d in titled_documents() if is_held_out(d, EVAL_FRACTION)}
    records = preference_records(100, 0, WEIGHTS, construction="mirrored")
    shown = {line.split('source="', 1)[1].split('"', 1)[0] for r in records
             for line in r["prompt"][0]["content"].splitlines() if line.startswith("<reference ")}
    assert shown and not shown & held_out_titles


def test_held_out_pairs_do_not_depend_on_the_training_construction():
    assert (preference_records(30, 1, WEIGHTS, held_out=True, construction=PairConstruction.MIRRORED)
            == preference_records(30, 1, WEIGHTS, held_out=True))


@pytest.mark.parametrize(("raw", "field"), [({"pair_construction": "shuffled"}, "pair_construction"),
                                            ({"trainable_modules": []}, "trainable_modules")])
def test_bad_pair_settings_are_rejected(raw, field):
    with pytest.raises(ValueError, match=field):
        DPORecipe.from_dict({"base_model": "a", "output_dir": "b", **raw})


def test_mirrored_wrong_answers_match_the_right_one_in_length_and_ending():
    """Length or a cut-off ending would rank a pair without reading the prompt."""
    for record in preference_records(60, 0, WEIGHTS, construction=PairConstruction.MIRRORED):
        if record["objective"] == "helpfulness":
            chosen, rejected = reply_text(record, "chosen"), reply_text(record, "rejected")
            assert len(rejected.split()) <= len(chosen.split())
            assert chosen[-1] not in ".!?:;,)" or rejected[-1] == chosen[-1]
            citation = record["chosen"][0]["content"].rsplit(" ", 1)[1]
            assert record["rejected"][0]["content"].rsplit(" ", 1)[1] == citation


def test_safety_pairs_choose_the_refusal_as_often_as_they_reject_it_so_only_the_request_decides():
    from chatstack.alignment.reader_data import HELD_OUT_UNSAFE_REQUESTS, SYSTEM_PROMPT, moderation_requests
    from chatstack.alignment.served_chunks import NOT_COVERED
    from chatstack.safety.rules import REFUSAL

    safety = [r for r in preference_records(400, 0, ObjectiveWeights(helpfulness=0, safety=1))]
    kinds = Counter(r["kind"] for r in safety)
    assert set(kinds) == {"not_refused", "refused", "refused_not_declined"}
    assert 0.4 < kinds["not_refused"] / len(safety) < 0.6  # the refusal rejected about as often as chosen
    for r in safety:
        request, chosen, rejected = r["prompt"][-1]["content"], r["chosen"][0]["content"], r["rejected"][0]["content"]
        assert r["prompt"][0]["content"] == SYSTEM_PROMPT  # shown no passage
        if r["kind"] == "not_refused":
            assert (chosen, rejected) == (NOT_COVERED, REFUSAL) and request not in moderation_requests()
        else:
            assert chosen == REFUSAL and (rejected == NOT_COVERED) == (r["kind"] == "refused_not_declined")
    held = [r for r in preference_records(200, 1, ObjectiveWeights(helpfulness=0, safety=1), held_out=True)]
    held_requests = {r["prompt"][-1]["content"] for r in held}
    assert held_requests <= set(moderation_requests(benign=True, held_out=True)) | set(moderation_requests(held_out=True)) \
        | set(HELD_OUT_UNSAFE_REQUESTS)
    assert not held_requests & {r["prompt"][-1]["content"] for r in safety}


@pytest.mark.parametrize("construction", list(PairConstruction))
def test_every_construction_writes_pairs_the_versioned_table_accepts(construction):
    """The demo pipeline versions its pairs: a field the table does not know fails `make demo` at DPO."""
    from chatstack.datasets import DatasetKind

    for held_out in (False, True):
        for row, record in enumerate(preference_records(40, 0, WEIGHTS, held_out=held_out, construction=construction)):
            DatasetKind.PREFERENCES.check(record | {"split": "eval" if held_out else "train"}, row)
