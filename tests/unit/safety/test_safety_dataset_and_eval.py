"""Training and evaluation data stay disjoint; the evaluation runs end to end on a small sample."""

from __future__ import annotations

import argparse

import pytest
import yaml

from chatstack.safety import evaluate
from chatstack.safety.dataset import EVAL_PATH, TRAIN_PATH, expand_class, load_examples, load_pii_examples
from chatstack.safety.policy import BENIGN, CATEGORIES


def test_train_and_eval_share_no_template_and_no_text():
    train, held_out = (yaml.safe_load(path.read_text())["classes"] for path in (TRAIN_PATH, EVAL_PATH))
    train_templates = {t for templates in train.values() for t in templates}
    assert not train_templates & {t for templates in held_out.values() for t in templates}
    train_texts = {e.text.lower() for e in load_examples(TRAIN_PATH)}
    assert not train_texts & {e.text.lower() for e in load_examples(EVAL_PATH)}


def test_every_class_has_training_examples():
    labels = {e.label for e in load_examples(TRAIN_PATH, per_class=20)}
    assert labels == {BENIGN, *CATEGORIES}


def test_an_unknown_slot_fails_loudly():
    with pytest.raises(ValueError, match=r"\{weapon\} has no filler list"):
        expand_class("violence", ["build {weapon}"], {}, count=3, seed=0)


def test_expansion_is_deterministic():
    assert load_examples(EVAL_PATH, per_class=10, seed=3) == load_examples(EVAL_PATH, per_class=10, seed=3)


def test_small_evaluation_reports_every_metric(moderator):
    examples = load_examples(EVAL_PATH, per_class=2, seed=1)[:40]
    report = evaluate.evaluate(moderator, examples, load_pii_examples(EVAL_PATH, per_kind=3, seed=1))
    assert set(report.per_category) == set(CATEGORIES)
    assert 0.0 <= report.benign_false_refusal_rate <= 1.0 and report.pii_recall > 0.5
    assert report.latency_median_ms > 0 and "jailbreak block rate" in evaluate.format_report(report)


def test_eval_safety_registers_as_a_sub_command():
    parser = argparse.ArgumentParser()
    evaluate.register(parser.add_subparsers(dest="suite", required=True))
    args = parser.parse_args(["safety", "--per-class", "5"])
    assert args.per_class == 5 and args.func is not None
