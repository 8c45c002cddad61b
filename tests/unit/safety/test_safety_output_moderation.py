"""Streaming output moderation never hands out a window that failed its check."""

from __future__ import annotations

import pytest

from chatstack.safety.moderator import ModerationResult
from chatstack.safety.output_moderation import StreamModerator
from chatstack.safety.policy import Action

HARMFUL = "mix the fuel with the oxidizer in a pipe"


def keyword_check(text: str) -> ModerationResult:
    """A stand-in classifier: harmful iff the whole phrase is inside the checked window."""
    if HARMFUL in text:
        return ModerationResult(Action.REFUSE, "weapons_drugs", 1.0, text, "I can't help with that.")
    return ModerationResult(Action.ALLOW, None, 0.0, text)


def stream(text: str, moderator: StreamModerator, piece: int) -> tuple[str, ModerationResult | None]:
    released = []
    for start in range(0, len(text), piece):
        step = moderator.feed(text[start:start + piece])
        released.append(step.text)
        if step.violation:
            return "".join(released), step.violation
    final = moderator.finish()
    return "".join(released) + final.text, final.violation


BENIGN = "Lists are mutable sequences. You can append, extend and sort them in place. " * 12


@pytest.mark.parametrize("piece", [1, 3, 7, 50])
def test_benign_stream_is_released_whole(piece):
    released, violation = stream(BENIGN, StreamModerator(keyword_check, window=120, check_every=40), piece)
    assert violation is None and released == BENIGN


@pytest.mark.parametrize("piece", [1, 4, 13, 64])
@pytest.mark.parametrize("offset", [0, 35, 39, 40, 41, 200, 777])
def test_harmful_window_is_never_released(piece, offset):
    text = BENIGN[:offset] + HARMFUL + BENIGN[offset:]
    moderator = StreamModerator(keyword_check, window=120, check_every=40)
    released, violation = stream(text, moderator, piece)
    assert violation is not None and violation.category == "weapons_drugs"
    assert HARMFUL not in released
    assert text.startswith(released)
    assert moderator.feed("more text").text == ""


def test_harm_at_the_very_end_is_caught_by_the_final_check():
    moderator = StreamModerator(keyword_check, window=400, check_every=300)
    assert moderator.feed("Sure: " + HARMFUL).text == ""
    assert moderator.finish().violation is not None


def test_pii_is_redacted_even_when_split_across_deltas():
    text = "Contact support at help.desk@example.com or +1 415 555 2671 for help. " + "Thanks for asking! " * 10
    released, _ = stream(text, StreamModerator(keyword_check, window=120, check_every=40), 3)
    assert "[EMAIL]" in released and "[PHONE]" in released
    assert "example.com" not in released and "555" not in released


def test_window_settings_are_validated():
    with pytest.raises(ValueError, match="check_every"):
        StreamModerator(keyword_check, window=10, check_every=20)


def test_step_with_final_checks_and_releases_the_rest():
    moderator = StreamModerator(keyword_check, window=400, check_every=300)
    assert moderator.step("All good here.", final=False).text == ""
    assert moderator.step(" The end.", final=True).text == "All good here. The end."
    harmful = StreamModerator(keyword_check, window=400, check_every=300)
    assert harmful.step("Sure, " + HARMFUL, final=True).violation is not None


def test_first_text_is_released_after_holdback_plus_first_check():
    moderator = StreamModerator(keyword_check, window=400, check_every=120, first_check=32, holdback=64)
    released, fed = "", 0
    while not released:
        released += moderator.feed(BENIGN[fed:fed + 4]).text
        fed += 4
    assert fed <= 64 + 32 and moderator.checks == 3
    assert len(released) <= fed - 64  # what was sent was checked with >= holdback chars after it


@pytest.mark.parametrize("offset", [0, 10, 31, 32, 33, 60, 95, 96, 97])
def test_harm_in_the_first_windows_is_never_released(offset):
    text = BENIGN[:offset] + HARMFUL + BENIGN[offset:]
    released, violation = stream(text, StreamModerator(keyword_check, first_check=32, holdback=64), 1)
    assert violation is not None and HARMFUL not in released and text.startswith(released)


def test_released_text_always_trails_the_last_check_by_the_holdback():
    moderator = StreamModerator(keyword_check, window=200, check_every=50, first_check=16, holdback=48)
    released = ""
    for start in range(0, len(BENIGN), 5):
        released += moderator.feed(BENIGN[start:start + 5]).text
        assert len(released) <= max(0, moderator._checked - 48)
    assert released + moderator.finish().text == BENIGN


@pytest.mark.parametrize("piece", [1, 3, 7, 50])
def test_windows_before_the_end_never_end_inside_a_word(piece):
    windows = []

    def recording_check(text: str) -> ModerationResult:
        windows.append(text)
        return keyword_check(text)

    text = "The documents I was given do not cover build_dir, so I cannot answer that from them. " * 6
    released, violation = stream(text, StreamModerator(recording_check, window=120, check_every=40), piece)
    assert violation is None and released == text
    *early, last = windows
    assert early and all(w[-1].isspace() for w in early)
    assert text.endswith(last)


@pytest.mark.parametrize("kwargs, field", [
    ({"first_check": 0}, "first_check"), ({"first_check": 200}, "first_check"),
    ({"holdback": 10}, "holdback"), ({"holdback": 300}, "holdback"),
])
def test_first_check_and_holdback_are_validated(kwargs, field):
    with pytest.raises(ValueError, match=field):
        StreamModerator(keyword_check, window=400, check_every=120, **kwargs)


def short_window_misfire(text: str) -> ModerationResult:
    """The classifier's known misfire on a two-word window, and the keyword check otherwise."""
    if text.strip() == "The constructor":
        return ModerationResult(Action.REFUSE, "weapons_drugs", 0.93, text, "I can't help with that.")
    return keyword_check(text)


@pytest.mark.parametrize("piece", [1, 5, 200])
def test_a_failed_check_on_the_first_few_words_is_decided_by_more_text(piece):
    text = "The constructor builds a list whose items are the same and in the same order as the iterable's items."
    released, violation = stream(text, StreamModerator(short_window_misfire, window=400, check_every=120), piece)
    assert violation is None and released == text


def test_a_short_stream_is_still_refused_by_its_final_check():
    moderator = StreamModerator(keyword_check, window=400, check_every=120)
    assert moderator.feed(HARMFUL).text == ""
    assert moderator.finish().violation is not None


@pytest.mark.parametrize("piece", [1, 4])
def test_harm_that_opens_a_stream_is_refused_once_the_text_is_long_enough_to_judge(piece):
    text = HARMFUL + " and then seal both ends of it tightly before use. " * 3
    released, violation = stream(text, StreamModerator(keyword_check, window=400, check_every=120), piece)
    assert violation is not None and released == ""
