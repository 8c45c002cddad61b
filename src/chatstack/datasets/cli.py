"""`chatstack datasets commit|history|bench`: commit a JSONL file as a version, list versions, cost of versioning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from chatstack.datasets.kinds import DatasetKind


def register(subparsers) -> None:
    p = subparsers.add_parser("datasets", help="versioned datasets (Delta Lake tables)")
    sub = p.add_subparsers(dest="datasets_command", required=True)
    q = sub.add_parser("history", help="versions of a dataset table: number, rows, content hash, stage metadata")
    q.add_argument("uri", help="table path or s3:// URI (credentials from the AWS_* environment)")
    q.add_argument("--json", action="store_true", help="one JSON object per version")
    q.set_defaults(func=cmd_history)
    q = sub.add_parser("commit", help="commit a JSONL file as the next version of a table (e.g. a real SFT set)")
    q.add_argument("uri", help="table path or s3:// URI (credentials from the AWS_* environment)")
    q.add_argument("--kind", required=True, choices=[k.value for k in DatasetKind])
    q.add_argument("--jsonl", type=Path, required=True, help="one record per line, in the kind's columns")
    q.add_argument("--split", help="split for records without one (conversations, preferences)")
    q.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="kept in the commit (repeatable)")
    q.set_defaults(func=cmd_commit)
    q = sub.add_parser("bench", help="cost of versioning a corpus: JSONL write vs Delta commit vs verified read")
    q.add_argument("corpus", type=Path, help="JSONL of {id, text}, e.g. the output of `chatstack curate`")
    q.set_defaults(func=cmd_bench)


def cmd_history(args) -> int:
    import dataclasses

    from chatstack.datasets.table import dataset_history

    uri = args.uri if "://" in args.uri else str(Path(args.uri).resolve())
    versions = dataset_history(uri)
    if not versions:
        print(f"{uri}: no dataset versions")
        return 1
    for v in versions:
        if args.json:
            print(json.dumps(dataclasses.asdict(v)))
        else:
            print(f"v{v.version}  {v.committed_at}  {v.kind:<13} {v.rows:>8} rows  {v.content_hash[:19]}…  "
                  f"{json.dumps(v.metadata)}")
    return 0


def cmd_bench(args) -> int:
    from chatstack.datasets import bench

    bench.main(args.corpus)
    return 0


def jsonl_records(path: Path, split: str | None) -> Iterator[dict]:
    with path.open(encoding="utf-8") as source:
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if split is not None and isinstance(record, dict):
                record.setdefault("split", split)
            yield record


def cmd_commit(args) -> int:
    from chatstack.datasets.table import VersionedTable

    kind = DatasetKind(args.kind)
    bad = [m for m in args.meta if "=" not in m]
    if bad:
        raise SystemExit(f"--meta expects KEY=VALUE, got {bad}")
    if args.split is not None and "split" not in {f.name for f in kind.fields}:
        raise SystemExit(f"--split does not apply to {kind.value} records")
    metadata = {"stage": "datasets commit", "source": str(args.jsonl), **dict(m.split("=", 1) for m in args.meta)}
    try:
        version = VersionedTable(args.uri, kind).write(jsonl_records(args.jsonl, args.split), metadata)
    except ValueError as exc:
        raise SystemExit(f"chatstack datasets commit: {exc}") from None
    print(f"{version.uri} version {version.version}: {version.rows} rows, {version.content_hash}")
    return 0
