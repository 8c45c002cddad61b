"""`chatstack datasets history URI`: the versions of a dataset table, newest last."""

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
