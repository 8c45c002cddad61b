"""Versioned Delta tables on a local path: write, read back, time travel, hashes, bad input."""

from __future__ import annotations

import json
import pytest
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake

from chatstack.datasets import DatasetKind, DatasetRef, VersionedTable, read_lineage, resolve_dataset, write_lineage
from chatstack.datasets.content_hash import content_hash
from chatstack.datasets.kinds import BATCH_ROWS


def docs(n: int, tag: str = "v") -> list[dict]:
    return [{"id": f"doc-{i}", "text": f"{tag} text {i} — ünïcode ✓"} for i in range(n)]


def pair(split: str, objective: str | None = None, source: str | None = None, kind: str | None = None) -> dict:
    return {"split": split, "prompt": [{"role": "user", "content": "Hi?"}],
            "chosen": [{"role": "assistant", "content": "Hello."}],
            "rejected": [{"role": "assistant", "content": "Go away."}], "objective": objective, "source": source,
            "kind": kind, "section": None if kind is None else "python_topics/x.txt § X"}


def test_versions_are_snapshots_read_back_in_order(tmp_path):
    table = VersionedTable(tmp_path / "corpus", DatasetKind.CORPUS)
    first = table.write(docs(3), {"stage": "curate"})
    second = table.write(docs(BATCH_ROWS + 5, "w"))  # more than one Arrow batch
    assert (first.version, second.version) == (0, 1)
    assert first.rows == 3 and second.rows == BATCH_ROWS + 5
    assert first.metadata == {"stage": "curate"} and first.kind == "corpus"
    assert table.read(0) == docs(3)
    assert table.read() == docs(BATCH_ROWS + 5, "w")
    assert [v.version for v in table.history()] == [0, 1]
    assert first.content_hash == content_hash(docs(3)) != second.content_hash


def test_same_content_adds_no_version(tmp_path):
    table = VersionedTable(tmp_path / "corpus", DatasetKind.CORPUS)
    assert table.write(docs(4)) == table.write(iter(docs(4)))
    assert len(table.history()) == 1
    assert table.write(docs(5)).version == 1


def test_nested_messages_and_optional_fields_round_trip(tmp_path):
    table = VersionedTable(tmp_path / "pairs", DatasetKind.PREFERENCES)
    records = [pair("train", objective="safety"), pair("eval", source="correction")]
    table.write(records)
    assert table.read() == records


def test_a_field_the_kind_gained_is_written_beside_versions_without_it(tmp_path, monkeypatch):
    """A table written before preference pairs carried `kind` / `section` takes a version with them."""
    from chatstack.datasets import kinds

    table = VersionedTable(tmp_path / "pairs", DatasetKind.PREFERENCES)
    older = tuple(f for f in DatasetKind.PREFERENCES.fields if f.name not in ("kind", "section"))
    with monkeypatch.context() as patched:
        patched.setitem(kinds._FIELDS, DatasetKind.PREFERENCES, older)
        old = [{k: v for k, v in pair("train", objective="safety").items() if k not in ("kind", "section")}]
        first = table.write(old)
    second = table.write([pair("train", objective="safety", kind="not_refused")])
    assert (first.version, second.version) == (0, 1)
    assert table.read(0) == old and table.read()[0]["kind"] == "not_refused"


def test_empty_version_is_a_version(tmp_path):
    table = VersionedTable(tmp_path / "feedback", DatasetKind.PREFERENCES)
    assert table.write([]).rows == 0
    assert table.read() == []


def test_data_that_does_not_match_its_recorded_hash_is_refused(tmp_path):
    table = VersionedTable(tmp_path / "corpus", DatasetKind.CORPUS)
    honest = table.write(docs(3))
    forged = pa.table({"_row": pa.array([0, 1, 2], pa.int64()), "id": ["a", "b", "c"], "text": ["x", "y", "z"]},
                      schema=DatasetKind.CORPUS.schema)
    # another writer commits different rows under the honest version's hash
    write_deltalake(table.uri, forged, mode="overwrite",
                    commit_properties=CommitProperties(custom_metadata=honest.commit_metadata()))
    with pytest.raises(ValueError, match="content hash mismatch"):
        table.read()
    assert len(table.read(verify=False)) == 3 and table.read(0) == docs(3)


@pytest.mark.parametrize("record, message", [
    ({"id": "a"}, "field 'text' is required"),
    ({"id": "a", "text": "t", "lang": "en"}, r"unknown field\(s\) \['lang'\]"),
    ({"id": 7, "text": "t"}, "field 'id' must be a string"),
    ("just text", "must be a mapping"),
])
def test_bad_records_name_the_field_and_write_nothing(tmp_path, record, message):
    table = VersionedTable(tmp_path / "corpus", DatasetKind.CORPUS)
    with pytest.raises(ValueError, match=message):
        table.write([{"id": "ok", "text": "fine"}, record])
    assert table.history() == []


def test_bad_messages_are_rejected(tmp_path):
    table = VersionedTable(tmp_path / "sft", DatasetKind.CONVERSATIONS)
    with pytest.raises(ValueError, match="field 'messages'"):
        table.write([{"split": "train", "messages": [{"role": "user"}]}])


def test_kind_mismatch_and_missing_versions_are_errors(tmp_path):
    VersionedTable(tmp_path / "t", DatasetKind.CORPUS).write(docs(1))
    with pytest.raises(ValueError, match="holds corpus records, not preferences"):
        VersionedTable(tmp_path / "t", DatasetKind.PREFERENCES).write([pair("train")])
    with pytest.raises(ValueError, match="no version 9"):
        VersionedTable(tmp_path / "t", DatasetKind.CORPUS).read(9)
    with pytest.raises(ValueError, match="no versions yet"):
        VersionedTable(tmp_path / "empty", DatasetKind.CORPUS).read()


def test_is_a_real_delta_table(tmp_path):
    VersionedTable(tmp_path / "corpus", DatasetKind.CORPUS).write(docs(2))
    assert DeltaTable(str(tmp_path / "corpus")).to_pyarrow_table().num_rows == 2


@pytest.mark.parametrize("raw, message", [
    ({"uri": ""}, "non-empty"), ({"uri": "x", "version": -1}, "version must be an integer >= 0"),
    ({"uri": "x", "version": "latest"}, "version must be"), ({"uri": "x", "versoin": 1}, "unknown dataset key"),
    ({"uri": "x", "storage_options": {"AWS_REGION": 1}}, "storage_options"),
])
def test_dataset_ref_rejects_bad_values(raw, message):
    with pytest.raises(ValueError, match=message):
        DatasetRef.coerce(raw)


def test_resolve_pins_a_version_and_lineage_records_it(tmp_path):
    ref = DatasetRef(str(tmp_path / "corpus"))
    records, first = resolve_dataset(ref, DatasetKind.CORPUS, lambda: docs(2))
    _, second = resolve_dataset(ref, DatasetKind.CORPUS, lambda: docs(3))
    pinned, entry = resolve_dataset(DatasetRef(ref.uri, version=0), DatasetKind.CORPUS,
                                    lambda: pytest.fail("a pinned version is read, not rebuilt"))
    assert (first.version, second.version, entry) == (0, 1, first) and pinned == records == docs(2)
    write_lineage(tmp_path, "sft", {"train": entry})
    assert read_lineage(tmp_path) == {"train": first}
    assert json.loads((tmp_path / "lineage.json").read_text())["stage"] == "sft"


def test_a_table_only_reference_reads_without_generating(tmp_path):
    ref = DatasetRef.coerce({"uri": str(tmp_path / "sft"), "generate": False})
    with pytest.raises(ValueError, match="no versions yet"):
        resolve_dataset(ref, DatasetKind.CORPUS, lambda: pytest.fail("generate: false never builds"))
    VersionedTable(ref.uri, DatasetKind.CORPUS).write(docs(2))
    records, version = resolve_dataset(ref, DatasetKind.CORPUS, lambda: pytest.fail("generate: false never builds"))
    assert records == docs(2) and version.version == 0
    with pytest.raises(ValueError, match="generate must be true or false"):
        DatasetRef.coerce({"uri": "x", "generate": "no"})
