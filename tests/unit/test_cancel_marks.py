"""Cross-process cancellation marks: one file per stream key in a shared folder."""

from __future__ import annotations

import uuid

import pytest

from chatstack.serving.cancel_marks import CancelMarks, default_marks_dir


@pytest.fixture
def marks(tmp_path) -> CancelMarks:
    return CancelMarks(tmp_path / "marks")


def new_key() -> str:
    return uuid.uuid4().hex


def test_unmarked_key_is_not_marked(marks):
    assert not marks.is_marked(new_key())


def test_mark_then_clear(marks):
    key = new_key()
    marks.mark(key)
    assert marks.is_marked(key)
    marks.clear(key)
    assert not marks.is_marked(key)


def test_marks_are_per_key(marks):
    cancelled, running = new_key(), new_key()
    marks.mark(cancelled)
    assert marks.is_marked(cancelled) and not marks.is_marked(running)


def test_mark_is_idempotent_and_clear_tolerates_missing(marks):
    key = new_key()
    marks.mark(key)
    marks.mark(key)
    marks.clear(key)
    marks.clear(key)
    assert not marks.is_marked(key)


def test_a_mark_is_seen_by_another_instance_on_the_same_folder(tmp_path):
    key = new_key()
    CancelMarks(tmp_path / "shared").mark(key)  # postprocess's process
    assert CancelMarks(tmp_path / "shared").is_marked(key)  # generate's process
    assert not CancelMarks(tmp_path / "other").is_marked(key)


def test_the_folder_is_created(tmp_path):
    CancelMarks(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()


@pytest.mark.parametrize(
    "key",
    ["../x", "../" + "0" * 29, "/etc/passwd", "a" * 31, "a" * 33, "A" * 32, "g" * 32, "", "0" * 31 + "\n",
     "0" * 32 + "/../../x"],
)
def test_invalid_keys_are_rejected(marks, tmp_path, key):
    for action in (marks.mark, marks.is_marked, marks.clear):
        with pytest.raises(ValueError, match="stream_key"):
            action(key)
    assert list(tmp_path.rglob("*")) == [tmp_path / "marks"]  # nothing written anywhere


def test_default_folder_is_per_user():
    folder = default_marks_dir()
    assert folder.name.startswith("chatstack-cancel-") and folder.is_absolute()


def test_key_with_a_trailing_newline_is_rejected(marks):
    with pytest.raises(ValueError, match="stream_key"):
        marks.mark("0" * 32 + "\n")
