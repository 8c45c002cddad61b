"""The policy file is validated at load time; `decide` applies thresholds and actions."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from chatstack.config import SafetySection, config_from_dict
from chatstack.safety.classifier import CategoryScores
from chatstack.safety.moderator import decide
from chatstack.safety.policy import CATEGORIES, DEFAULT_POLICY_PATH, Action, load_policy, policy_from_dict


def default_dict() -> dict:
    return yaml.safe_load(DEFAULT_POLICY_PATH.read_text())


def scores(**values: float) -> CategoryScores:
    return CategoryScores({name: values.get(name, 0.0) for name in CATEGORIES})


def test_default_policy_covers_every_category_with_a_message():
    policy = load_policy()
    assert set(policy.categories) == set(CATEGORIES)
    assert all(rule.message for rule in policy.categories.values() if rule.action is Action.REFUSE)
    assert "jailbreak" not in policy.output_categories()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["categories"]["violence"].update(threshold=1.5), "violence.threshold must be in"),
    (lambda d: d["categories"]["violence"].update(action="explode"), "violence.action must be one of"),
    (lambda d: d["categories"]["violence"].update(colour="red"), "unknown key"),
    (lambda d: d["categories"].pop("privacy"), "missing \\['privacy'\\]"),
    (lambda d: d["categories"].update(spam={"threshold": 0.5, "action": "flag"}), "'spam' is unknown"),
    (lambda d: d["categories"]["self_harm"].update(message=""), "message is required"),
    (lambda d: d.update(harm_threshold=0), "harm_threshold must be in"),
    (lambda d: d.update(pii={"action": "refuse"}), "pii.action must be"),
])
def test_bad_policies_fail_loudly(edit, message):
    data = default_dict()
    edit(data)
    with pytest.raises(ValueError, match=message):
        policy_from_dict(data)


def test_a_category_over_its_threshold_fires_its_action():
    assert decide(scores(violence=0.9), load_policy(), CATEGORIES) == (Action.REFUSE, "violence", 0.9)


def test_nothing_fires_below_thresholds():
    assert decide(scores(violence=0.2, privacy=0.1), load_policy(), CATEGORIES)[0] is Action.ALLOW


def test_split_probability_mass_fires_the_top_category():
    action, category, _ = decide(scores(violence=0.4, weapons_drugs=0.35), load_policy(), CATEGORIES)
    assert (action, category) == (Action.REFUSE, "violence")


def test_more_severe_action_wins_over_higher_score():
    data = default_dict()
    data["categories"]["privacy"]["action"] = "flag"
    policy = policy_from_dict(data)
    assert decide(scores(privacy=0.99, malware_cyber=0.6), policy, CATEGORIES)[:2] == (Action.REFUSE, "malware_cyber")


def test_output_checks_skip_input_only_categories():
    assert decide(scores(jailbreak=1.0), load_policy(), load_policy().output_categories())[0] is Action.ALLOW


def test_safety_section_validates_and_resolves(tmp_path):
    with pytest.raises(ValueError, match="safety.output_check_every_chars"):
        SafetySection(output_window_chars=100, output_check_every_chars=200)
    cfg = config_from_dict({"safety": {"policy_path": "policy.yaml", "use_embeddings": False}}).resolved(tmp_path)
    assert cfg.safety.policy_path == str(tmp_path / "policy.yaml") and cfg.safety.head_path is None
    assert dataclasses.replace(cfg.safety, use_embeddings=True).use_embeddings
