"""`chatstack curate` and `chatstack feedback export` commit what they write as dataset versions."""

from __future__ import annotations

import json

import pytest

from chatstack import cli, project
from chatstack.datasets import DatasetKind, VersionedTable
from chatstack.feedback.store import FeedbackStore
from chatstack.text.chat_template import Message

PROSE = ("The {name} statement binds a name in the current scope. It is evaluated once when the block runs, "
         "and the value it produces stays bound until another assignment replaces it. Readers of the code "
         "should find the binding near its use, which keeps {name} easy to follow in larger programs.")


def test_curate_commits_the_kept_documents_as_a_version(tmp_path):
    source = tmp_path / "raw.jsonl"
    rows = [{"id": f"d{i}", "text": PROSE.format(name=f"item{i}") + f" Note {i}: " + " ".join(
        f"w{i}x{j}" for j in range(40))} for i in range(3)]
    source.write_text("\n".join(json.dumps(r) for r in rows + [{"id": "dup", "text": rows[0]["text"]}]))
    table = tmp_path / "corpus"
    args = ["curate", "--input", str(source), "--out", str(tmp_path / "curated.jsonl"), "--table", str(table)]
    assert cli.main(args) == 0
    assert cli.main(args) == 0  # same output: no second version
    (version,) = VersionedTable(table, DatasetKind.CORPUS).history()
    kept = [json.loads(line) for line in (tmp_path / "curated.jsonl").read_text().splitlines()]
    assert VersionedTable(table, DatasetKind.CORPUS).read() == kept and version.rows == len(kept) == 3
    assert version.metadata["stage"] == "curate" and version.metadata["seen"] == "4"


def test_feedback_export_commits_the_pairs_as_a_version(tmp_path):
    db = tmp_path / "sessions.sqlite"
    config = tmp_path / "deploy.toml"
    config.write_text(project.DEFAULT_CONFIG.read_text().replace('db_path = "../artifacts/sessions.sqlite"',
                                                                 f'db_path = "{db}"'))
    store = FeedbackStore(db)
    prompt = [Message("user", "What is a tuple?")]
    store.record_response("a" * 32, "s1", prompt, "A fish.")
    store.record_feedback("a" * 32, -1, "An immutable sequence.")
    table = tmp_path / "feedback"
    export = ["--config", str(config), "feedback", "export", "--out", str(tmp_path / "pairs.jsonl"), "--table", str(table)]
    assert cli.main(export) == 0
    (pair,) = VersionedTable(table, DatasetKind.PREFERENCES).read()
    assert pair["chosen"] == [{"role": "assistant", "content": "An immutable sequence."}]
    assert pair["source"] == "correction" and pair["split"] == "train"
    store.record_response("b" * 32, "s2", prompt, "A list.")
    store.record_feedback("b" * 32, -1, "An immutable sequence.")
    assert cli.main(export) == 0
    history = VersionedTable(table, DatasetKind.PREFERENCES).history()
    assert [v.rows for v in history] == [1, 2] and history[-1].metadata["rated_answers"] == "2"


def test_datasets_commit_turns_a_jsonl_file_into_a_version(tmp_path, capsys):
    source = tmp_path / "sft.jsonl"
    chat = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}
    source.write_text(json.dumps(chat) + "\n\n" + json.dumps({**chat, "split": "eval"}) + "\n")
    table = tmp_path / "sft"
    args = ["datasets", "commit", str(table), "--kind", "conversations", "--jsonl", str(source), "--split", "train",
            "--meta", "origin=hand-written"]
    assert cli.main(args) == 0
    (version,) = VersionedTable(table, DatasetKind.CONVERSATIONS).history()
    assert [r["split"] for r in VersionedTable(table, DatasetKind.CONVERSATIONS).read()] == ["train", "eval"]
    assert version.metadata["origin"] == "hand-written"
    assert cli.main(["datasets", "history", str(table)]) == 0 and "v0" in capsys.readouterr().out
    source.write_text(json.dumps({"split": "train", "messages": [{"role": "user"}]}) + "\n")
    with pytest.raises(SystemExit, match="conversations row 0: field 'messages'"):
        cli.main(args)
    source.write_text("{not json\n")
    with pytest.raises(SystemExit, match=r"sft.jsonl:1: not JSON"):
        cli.main(args)
