"""Curation on the real demo corpus with planted duplicates."""

from __future__ import annotations

import random

import pytest

from chatstack.curation.dedup import DedupConfig, Deduplicator, normalized_words, shingles
from chatstack.curation.heuristics import HeuristicConfig, rejection_reason
from chatstack.curation.pipeline import CurationConfig, CurationReport, SourceDocument, curate
from chatstack.model.corpus import titled_documents


def perturbed(text: str, rng: random.Random) -> str:
    """A near-copy: a few words dropped or swapped, as scrapers and mirrors produce."""
    words = text.split()
    for _ in range(max(1, len(words) // 40)):
        i = rng.randrange(len(words))
        if rng.random() < 0.5:
            del words[i]
        else:
            words[i] = words[i].upper()
    return " ".join(words)


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(normalized_words(a), 5), shingles(normalized_words(b), 5)
    return len(sa & sb) / len(sa | sb)


@pytest.fixture(scope="module")
def originals() -> list[SourceDocument]:
    docs = [d for d in titled_documents() if len(d.body.split()) >= 80][:600]
    return [SourceDocument(f"doc-{i}", d.text) for i, d in enumerate(docs)]


def test_planted_near_duplicates_are_removed_without_false_removals(originals):
    rng = random.Random(0)
    planted = [SourceDocument(f"copy-{i}", perturbed(d.text, rng)) for i, d in enumerate(rng.sample(originals, 100))]
    stream = originals + planted
    report = CurationReport()
    kept = {d.doc_id for d in curate(stream, CurationConfig(scrub_pii=False), report)}
    removed_copies = sum(1 for d in planted if d.doc_id not in kept)
    assert removed_copies / len(planted) >= 0.95
    # the corpus itself holds a few real near-duplicates (e.g. json.dump / json.dumps docstrings);
    # a false removal is one whose claimed original is not actually similar
    text = {d.doc_id: d.text for d in stream}
    false = [d for d, of in report.duplicate_of.items() if jaccard(text[d], text[of]) < 0.5]
    assert len(false) / len(stream) < 0.01, false
    assert report.seen == len(stream) and report.kept == len(kept)


def test_exact_duplicates_ignore_case_and_spacing():
    dedup = Deduplicator(DedupConfig())
    assert dedup.check("a", "Hello   World, this is a test")[0] == "keep"
    assert dedup.check("b", "hello world this is a TEST") == ("exact_duplicate", "a")


@pytest.mark.parametrize(
    ("text", "reason"),
    [("too few words here", "too_short"),
     ("buy now " * 50, "repeated_ngrams"),
     ("\n".join(["the same line of text is repeated here again"] * 10), "repeated_lines"),
     (" ".join(f"x{i}" for i in range(60)), "not_prose")],
)
def test_heuristics_name_the_reason(text, reason):
    assert rejection_reason(text, HeuristicConfig()) == reason


def test_pii_is_scrubbed_from_kept_documents():
    text = ("Contact the maintainer at jane.doe@example.com or call 415-555-0199 about the module. "
            "The module is used for parsing the configuration of the server and it is documented here.")
    report = CurationReport()
    (kept,) = list(curate([SourceDocument("a", text)], CurationConfig(), report))
    assert "jane.doe@example.com" not in kept.text and "415-555-0199" not in kept.text
    assert report.pii_spans_scrubbed >= 2


@pytest.mark.parametrize(("kwargs", "field"), [({"threshold": 1.5}, "threshold"), ({"shingle_words": 0}, "shingle_words")])
def test_bad_dedup_values_are_rejected(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DedupConfig(**kwargs)
