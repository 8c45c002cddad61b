"""Stop strings over streamed deltas: never emitted, even when split across deltas."""

from __future__ import annotations

import random

import pytest

from chatstack.text.stop_strings import StopCheck, StopStringMatcher


def run(stop_strings: tuple[str, ...], deltas: list[str]) -> tuple[str, bool]:
    """Feed deltas until a stop; returns (emitted text, stopped)."""
    matcher = StopStringMatcher(stop_strings)
    emitted = []
    for delta in deltas:
        check = matcher.feed(delta)
        emitted.append(check.text)
        if check.stopped:
            return "".join(emitted), True
    return "".join(emitted) + matcher.flush(), False


def test_stop_string_inside_one_delta():
    matcher = StopStringMatcher(("STOP",))
    assert matcher.feed("hello STOP world") == StopCheck("hello ", True)


def test_stop_string_at_the_very_start():
    assert run(("###",), ["###", "more"]) == ("", True)


@pytest.mark.parametrize(
    "deltas",
    [
        ["hello ST", "OP world"],
        ["hello S", "TO", "P world"],
        ["hello ", "S", "T", "O", "P"],
        ["hello STO", "P"],
    ],
)
def test_stop_string_split_across_deltas(deltas):
    assert run(("STOP",), deltas) == ("hello ", True)


def test_partial_match_is_held_back_until_it_resolves():
    matcher = StopStringMatcher(("STOP",))
    assert matcher.feed("hello ST") == StopCheck("hello ", False)
    assert matcher.feed("O") == StopCheck("", False)
    assert matcher.feed("P!") == StopCheck("", True)


def test_text_that_diverges_from_a_stop_string_is_released():
    matcher = StopStringMatcher(("STOP",))
    assert matcher.feed("a ST") == StopCheck("a ", False)
    assert matcher.feed("ORM") == StopCheck("STORM", False)
    assert matcher.flush() == ""


def test_overlapping_candidates_still_find_the_stop():
    # "aab" ends with "a" and "aa": the held-back tail must keep the longest prefix
    assert run(("aab",), ["xa", "a", "ab tail"]) == ("xa", True)
    assert run(("abab",), ["ab", "ab"]) == ("", True)
    assert run(("abac",), ["ab", "ab", "ac"]) == ("ab", True)


def test_earliest_of_several_stop_strings_wins():
    assert run(("world", "lo"), ["hello world"]) == ("hel", True)
    assert run(("</s>", "\n\n"), ["line\n", "\nmore </s>"]) == ("line", True)


def test_several_stop_strings_split_across_deltas():
    assert run(("<|end|>", "User:"), ["answer. Us", "er: hi"]) == ("answer. ", True)
    assert run(("<|end|>", "User:"), ["answer<|e", "nd|>"]) == ("answer", True)


def test_flush_releases_pending_text_that_never_completed():
    matcher = StopStringMatcher(("STOP",))
    assert matcher.feed("done ST").text == "done "
    assert matcher.flush() == "ST"
    assert matcher.flush() == ""


def test_no_stop_strings_passes_everything_through():
    matcher = StopStringMatcher(())
    for delta in ["a", "", "b c", "STOP"]:
        assert matcher.feed(delta) == StopCheck(delta, False)
    assert matcher.flush() == ""


def test_unicode_stop_strings():
    assert run(("。",), ["中文", "句子。后面"]) == ("中文句子", True)
    assert run(("😀!",), ["hi 😀", "!"]) == ("hi ", True)


def test_emitted_text_is_never_lost_without_a_stop():
    deltas = ["The ", "STO", "ry of S", "TOP", "S"]
    assert run(("STOPPED",), deltas) == ("".join(deltas), False)


@pytest.mark.parametrize("stops", [("",), ("ok", "")])
def test_empty_stop_string_is_rejected(stops):
    with pytest.raises(ValueError, match="stop_words"):
        StopStringMatcher(stops)


@pytest.mark.parametrize("seed", range(20))
def test_result_does_not_depend_on_how_the_text_is_split(seed):
    rng = random.Random(seed)
    stop = "".join(rng.choice("ab") for _ in range(rng.randint(1, 4)))
    text = "".join(rng.choice("abc") for _ in range(40))
    cuts = sorted(rng.sample(range(1, len(text)), rng.randint(0, 10)))
    deltas = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)])]
    position = text.find(stop)
    expected = (text, False) if position < 0 else (text[:position], True)
    assert run((stop,), deltas) == expected
