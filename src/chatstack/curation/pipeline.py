"""The curation pass: heuristics → PII scrubbing → exact/near-duplicate removal, with a report.

Streams: documents are read, judged and written one at a time; only the MinHash index
of kept documents stays in memory.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from chatstack.curation.dedup import DedupConfig, Deduplicator
from chatstack.curation.heuristics import HeuristicConfig, rejection_reason
from chatstack.safety.pii import find_pii, redact


@dataclass(frozen=True)
class CurationConfig:
    dedup: DedupConfig = DedupConfig()
    heuristics: HeuristicConfig = HeuristicConfig()
    scrub_pii: bool = True


@dataclass(frozen=True)
class SourceDocument:
    doc_id: str
    text: str


@dataclass
class CurationReport:
    seen: int = 0
    kept: int = 0
    removed: Counter = field(default_factory=Counter)
    pii_spans_scrubbed: int = 0
    duplicate_of: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"seen": self.seen, "kept": self.kept, "removed": dict(self.removed),
                           "pii_spans_scrubbed": self.pii_spans_scrubbed,
                           "duplicate_of": self.duplicate_of}, indent=2)


def curate(documents: Iterable[SourceDocument], cfg: CurationConfig, report: CurationReport) -> Iterator[SourceDocument]:
    """Yield the documents worth training on; `report` records every removal and why."""
    dedup = Deduplicator(cfg.dedup)
    for document in documents:
        report.seen += 1
        reason = rejection_reason(document.text, cfg.heuristics)
        if reason is not None:
            report.removed[reason] += 1
            continue
        text = document.text
        if cfg.scrub_pii:
            spans = find_pii(text)
            report.pii_spans_scrubbed += len(spans)
            text = redact(text, spans) if spans else text
        verdict, original = dedup.check(document.doc_id, text)
        if verdict != "keep":
            report.removed[verdict] += 1
            report.duplicate_of[document.doc_id] = original
            continue
        report.kept += 1
        yield SourceDocument(document.doc_id, text)


def read_jsonl(path: Path) -> Iterator[SourceDocument]:
    with path.open(encoding="utf-8") as source:
        for number, line in enumerate(source, start=1):
            if line.strip():
                record = json.loads(line)
                yield SourceDocument(str(record.get("id", number)), str(record["text"]))


def write_jsonl(documents: Iterable[SourceDocument], path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for document in documents:
            out.write(json.dumps({"id": document.doc_id, "text": document.text}, ensure_ascii=False) + "\n")
            count += 1
    return count
