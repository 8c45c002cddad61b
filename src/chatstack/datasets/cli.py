"""`chatstack datasets history URI` (the versions of a table, newest last) and `chatstack datasets bench`."""

from __future__ import annotations

import json
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("datasets", help="versioned datasets (Delta Lake tables)")
    sub = p.add_subparsers(dest="datasets_command", required=True)
    q = sub.add_parser("history", help="versions of a dataset table: number, rows, content hash, stage metadata")
    q.add_argument("uri", help="table path or s3:// URI (credentials from the AWS_* environment)")
    q.add_argument("--json", action="store_true", help="one JSON object per version")
    q.set_defaults(func=cmd_history)
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
