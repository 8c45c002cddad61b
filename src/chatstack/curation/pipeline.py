"""The curation pass: heuristics → PII scrubbing → small-LM quality filter → exact/near-duplicate
removal, with a report.

Streams: documents are read, judged and written one at a time (the quality filter scores them
in small batches); only the MinHash index of kept documents stays in memory.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from chatstack.curation.dedup import DedupConfig, Deduplicator
from chatstack.curation.heuristics import HeuristicConfig, rejection_reason
from chatstack.curation.quality import QualityConfig, QualityFilter
from chatstack.safety.pii import find_pii, redact


@dataclass(frozen=True)
class CurationConfig:
    dedup: DedupConfig = DedupConfig()
    heuristics: HeuristicConfig = HeuristicConfig()
    scrub_pii: bool = True
    quality: QualityConfig | None = None  # None: no perplexity filter

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "CurationConfig":
        """From a curation recipe: tables `dedup`, `heuristics`, `quality` (optional) and `scrub_pii`."""
        parts = {"dedup": DedupConfig, "heuristics": HeuristicConfig, "quality": QualityConfig}
        unknown = sorted(set(raw) - set(parts) - {"scrub_pii"})
        if unknown:
            raise ValueError(f"unknown curation key(s) {unknown}; allowed: {sorted(parts) + ['scrub_pii']}")
        built: dict[str, Any] = {}
        for name, part in parts.items():
            if raw.get(name) is not None:
                if not isinstance(raw[name], dict):
                    raise ValueError(f"{name} must be a table of settings, got {raw[name]!r}")
                try:
                    built[name] = part(**raw[name])
                except TypeError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        if "scrub_pii" in raw:
            if not isinstance(raw["scrub_pii"], bool):
                raise ValueError(f"scrub_pii must be true or false, got {raw['scrub_pii']!r}")
            built["scrub_pii"] = raw["scrub_pii"]
        return cls(**built)


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
    quality: dict = field(default_factory=dict)  # perplexity filter summary (empty when it is off)
    perplexity_of_removed: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"seen": self.seen, "kept": self.kept, "removed": dict(self.removed),
                           "pii_spans_scrubbed": self.pii_spans_scrubbed, "quality": self.quality,
                           "perplexity_of_removed": self.perplexity_of_removed,
                           "duplicate_of": self.duplicate_of}, indent=2)


def _passing_heuristics(documents: Iterable[SourceDocument], cfg: CurationConfig,
                        report: CurationReport) -> Iterator[SourceDocument]:
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
        yield SourceDocument(document.doc_id, text)


def _passing_quality(documents: Iterable[SourceDocument], quality: QualityFilter,
                     report: CurationReport) -> Iterator[SourceDocument]:
    for document, perplexity, reason in quality.judge((d, d.text) for d in documents):
        if reason is None:
            yield document
        else:
            report.removed[reason] += 1
            report.perplexity_of_removed[document.doc_id] = round(perplexity, 2)
    report.quality = quality.stats.summary()


def curate(documents: Iterable[SourceDocument], cfg: CurationConfig, report: CurationReport,
           quality: QualityFilter | None = None) -> Iterator[SourceDocument]:
    """Yield the documents worth training on; `report` records every removal and why.

    With `cfg.quality` set, documents are scored by a small LM (`quality`, or one loaded from
    `cfg.quality.model_dir`) before deduplication, so a garbage document never becomes the
    original its near-copies are measured against."""
    dedup = Deduplicator(cfg.dedup)
    stream = _passing_heuristics(documents, cfg, report)
    if cfg.quality is not None:
        stream = _passing_quality(stream, quality or QualityFilter(cfg.quality), report)
    for document in stream:
        text = document.text
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
