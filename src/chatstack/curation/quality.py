"""Small-LM quality filter: drop documents a small causal LM finds too surprising or too predictable.

Perplexity under a model trained on good prose is high for garbage (markup debris, encoding
noise, keyboard mash, foreign-script spam) and unusually low for boilerplate the model has seen
a thousand times. Documents are scored in batches as they stream past; a `drop_top_fraction`
bound is calibrated on the first `calibration_docs` documents and then held fixed, so memory
stays bounded however long the stream is.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence, TypeVar

import torch

DEFAULT_QUALITY_MODEL = Path("artifacts/demo-model")
RESERVOIR = 10_000  # perplexities kept for the report's median/min/max

T = TypeVar("T")


@dataclass(frozen=True)
class QualityConfig:
    model_dir: Path = DEFAULT_QUALITY_MODEL  # any HF causal LM folder (the pretrained demo base by default)
    max_perplexity: float | None = None  # drop documents above this perplexity
    drop_top_fraction: float | None = None  # drop this share of the most surprising documents
    min_perplexity: float | None = None  # drop boilerplate below this perplexity
    calibration_docs: int = 256  # documents scored before the top-fraction bound is fixed
    max_tokens: int = 512  # a document is scored on its first max_tokens tokens
    batch_size: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_dir", Path(self.model_dir))
        for name in ("max_perplexity", "min_perplexity"):
            value = getattr(self, name)
            if value is not None and not value > 1:
                raise ValueError(f"{name} must be > 1 (a perplexity) or null, got {value}")
        if self.max_perplexity is not None and self.min_perplexity is not None \
                and self.min_perplexity >= self.max_perplexity:
            raise ValueError(f"min_perplexity ({self.min_perplexity}) must be below max_perplexity "
                             f"({self.max_perplexity})")
        if self.drop_top_fraction is not None and not 0 < self.drop_top_fraction < 1:
            raise ValueError(f"drop_top_fraction must be in (0, 1) or null, got {self.drop_top_fraction}")
        for name in ("calibration_docs", "max_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_tokens < 2:
            raise ValueError(f"max_tokens must be >= 2 (one token predicts the next), got {self.max_tokens}")


@dataclass
class QualityStats:
    """What the filter saw, for the curation report."""

    scored: int = 0
    upper_bound: float | None = None  # the perplexity above which documents were dropped
    sample: list[float] = field(default_factory=list, repr=False)  # reservoir of perplexities for the summary
    _rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False)

    def add(self, perplexity: float) -> None:
        self.scored += 1
        if math.isnan(perplexity):
            return
        if len(self.sample) < RESERVOIR:
            self.sample.append(perplexity)
        elif (slot := self._rng.randrange(self.scored)) < RESERVOIR:
            self.sample[slot] = perplexity

    def summary(self) -> dict:
        values = sorted(self.sample)
        middle = values[len(values) // 2] if values else None
        return {"scored": self.scored, "upper_bound": self.upper_bound, "median_perplexity": middle,
                "min_perplexity": values[0] if values else None, "max_perplexity": values[-1] if values else None}


class PerplexityScorer:
    """Per-document perplexity under a causal LM, in padded batches."""

    def __init__(self, model_dir: Path, max_tokens: int):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not (Path(model_dir) / "config.json").exists():
            raise ValueError(f"quality.model_dir: no model saved at {model_dir}")
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
        self.max_tokens = max_tokens

    def perplexities(self, texts: Sequence[str]) -> list[float]:
        rows = [self.tokenizer(t, add_special_tokens=False, truncation=True, max_length=self.max_tokens).input_ids
                for t in texts]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)  # (B, T)
        mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T) 1 on real tokens
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        with torch.inference_mode():
            logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()  # (B, T-1, V)
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")  # (B, T-1)
        counted = mask[:, 1:].float()
        mean_nll = (nll * counted).sum(1) / counted.sum(1).clamp(min=1)
        # a document of one token has nothing to predict: perplexity 1 is "no evidence", not "boilerplate"
        return [math.exp(float(v)) if n > 0 else math.nan for v, n in zip(mean_nll, counted.sum(1))]


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class QualityFilter:
    """Streams (item, text) pairs and yields (item, perplexity, reason); reason None means keep."""

    def __init__(self, cfg: QualityConfig, scorer: PerplexityScorer | None = None):
        self.cfg = cfg
        self.scorer = scorer or PerplexityScorer(cfg.model_dir, cfg.max_tokens)
        self.stats = QualityStats(upper_bound=cfg.max_perplexity)

    def reason(self, perplexity: float) -> str | None:
        if math.isnan(perplexity):
            return None
        if self.stats.upper_bound is not None and perplexity > self.stats.upper_bound:
            return "high_perplexity"
        if self.cfg.min_perplexity is not None and perplexity < self.cfg.min_perplexity:
            return "low_perplexity"
        return None

    def _calibrate(self, perplexities: list[float]) -> None:
        finite = [p for p in perplexities if not math.isnan(p)]
        if not finite or self.cfg.drop_top_fraction is None:
            return
        bound = _quantile(finite, 1 - self.cfg.drop_top_fraction)
        self.stats.upper_bound = bound if self.cfg.max_perplexity is None else min(bound, self.cfg.max_perplexity)

    def _scored(self, items: Iterable[tuple[T, str]]) -> Iterator[tuple[T, float]]:
        for batch in _batched(items, self.cfg.batch_size):
            for (item, _), perplexity in zip(batch, self.scorer.perplexities([text for _, text in batch])):
                self.stats.add(perplexity)
                yield item, perplexity

    def judge(self, items: Iterable[tuple[T, str]]) -> Iterator[tuple[T, float, str | None]]:
        scored = self._scored(items)
        if self.cfg.drop_top_fraction is not None:
            # hold back the calibration window, fix the bound, then judge it and stream the rest
            window = [pair for _, pair in zip(range(self.cfg.calibration_docs), scored)]
            self._calibrate([p for _, p in window])
            for item, perplexity in window:
                yield item, perplexity, self.reason(perplexity)
        for item, perplexity in scored:
            yield item, perplexity, self.reason(perplexity)
