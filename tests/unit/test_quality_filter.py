"""Small-LM quality filter on a tiny real Llama trained for a few seconds on prose."""

from __future__ import annotations

import random
import string
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from chatstack.curation.pipeline import CurationConfig, CurationReport, SourceDocument, curate
from chatstack.curation.quality import PerplexityScorer, QualityConfig, QualityFilter
from chatstack.model.architecture import TinyLlamaSpec, to_llama_config
from chatstack.model.corpus import reference_documents
from chatstack.model.tokenizer import MIN_VOCAB_SIZE, train_tokenizer

# the language reference only: parsing the stdlib for docstrings would take most of this file's time
PROSE = [d for d in reference_documents() if len(d.body.split()) >= 60]


def garbage(rng: random.Random, words: int = 80) -> str:
    """Encoding debris with enough common words to pass the prose heuristic."""
    junk = string.ascii_letters + string.digits + "#@%&*{}<>|~^"
    return " ".join(rng.choice(("the", "of", "and")) if i % 4 == 0 else
                    "".join(rng.choice(junk) for _ in range(rng.randint(3, 9))) for i in range(words))


@pytest.fixture(scope="module")
def prose_model(tmp_path_factory) -> Path:
    """A 1-layer Llama and BPE tokenizer trained briefly on the first documents of the corpus."""
    folder = tmp_path_factory.mktemp("quality-lm")
    texts = [d.text for d in PROSE[:110]]
    tokenizer = train_tokenizer(texts, vocab_size=max(MIN_VOCAB_SIZE, 512))
    spec = TinyLlamaSpec(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
                         max_position_embeddings=256)
    torch.manual_seed(0)
    model = LlamaForCausalLM(to_llama_config(spec, tokenizer))
    ids = torch.tensor([t for text in texts for t in tokenizer(text).input_ids])
    blocks = ids[: len(ids) // 64 * 64].view(-1, 64)  # (N, 64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        batch = blocks[torch.randint(len(blocks), (16,), generator=generator)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def scorer(prose_model) -> PerplexityScorer:
    return PerplexityScorer(prose_model, max_tokens=128)


def planted_stream() -> tuple[list[SourceDocument], set[str]]:
    rng = random.Random(0)
    prose = [SourceDocument(f"doc-{i}", d.text) for i, d in enumerate(PROSE[110:140])]
    junk = [SourceDocument(f"junk-{i}", garbage(rng)) for i in range(5)]
    stream = prose + junk
    rng.shuffle(stream)
    return stream, {d.doc_id for d in junk}


def test_garbage_scores_higher_than_unseen_prose(scorer):
    stream, junk = planted_stream()
    perplexity = dict(zip([d.doc_id for d in stream], scorer.perplexities([d.text for d in stream])))
    assert min(perplexity[j] for j in junk) > max(p for d, p in perplexity.items() if d not in junk)


def test_planted_garbage_is_removed_with_its_reason(scorer):
    stream, junk = planted_stream()
    cfg = CurationConfig(scrub_pii=False, quality=QualityConfig(drop_top_fraction=0.15, calibration_docs=20,
                                                                batch_size=4, max_tokens=128))
    report = CurationReport()
    quality = QualityFilter(cfg.quality, scorer)
    kept = {d.doc_id for d in curate(stream, cfg, report, quality)}
    assert not kept & junk
    assert report.removed["high_perplexity"] <= len(junk) + 1  # at most one prose document lost
    assert set(report.perplexity_of_removed) >= junk
    assert report.quality["scored"] == len(stream) and report.quality["upper_bound"] is not None


def test_fixed_bounds_drop_both_tails(scorer):
    stream, junk = planted_stream()
    scores = dict(zip([d.doc_id for d in stream], scorer.perplexities([d.text for d in stream])))
    prose = sorted(p for d, p in scores.items() if d not in junk)
    cfg = QualityConfig(max_perplexity=(prose[-1] + min(scores[j] for j in junk)) / 2,
                        min_perplexity=(prose[0] + prose[1]) / 2, batch_size=3, max_tokens=128)
    verdicts = {d.doc_id: r for d, _, r in QualityFilter(cfg, scorer).judge((d, d.text) for d in stream)}
    assert {d for d, r in verdicts.items() if r == "high_perplexity"} == junk
    assert sum(r == "low_perplexity" for r in verdicts.values()) == 1


def test_recipe_builds_the_quality_stage():
    cfg = CurationConfig.from_dict({"quality": {"model_dir": "m", "drop_top_fraction": 0.05},
                                    "heuristics": {"min_words": 10}, "scrub_pii": False})
    assert cfg.quality.drop_top_fraction == 0.05 and cfg.heuristics.min_words == 10 and not cfg.scrub_pii
    assert CurationConfig.from_dict({}).quality is None


@pytest.mark.parametrize(("raw", "field"), [
    ({"quality": {"drop_top_fraction": 1.5}}, "drop_top_fraction"),
    ({"quality": {"max_perplexity": 0.5}}, "max_perplexity"),
    ({"quality": {"min_perplexity": 50, "max_perplexity": 20}}, "min_perplexity"),
    ({"quality": {"batch_size": 0}}, "batch_size"),
    ({"quality": {"bogus": 1}}, "quality"),
    ({"quality": "yes"}, "quality"),
    ({"scrub_pii": "no"}, "scrub_pii"),
    ({"filters": {}}, "filters"),
])
def test_bad_curation_recipe_values_are_rejected(raw, field):
    with pytest.raises(ValueError, match=field):
        CurationConfig.from_dict(raw)


def test_missing_quality_model_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="model_dir"):
        QualityFilter(QualityConfig(model_dir=tmp_path / "nothing", max_perplexity=100))
