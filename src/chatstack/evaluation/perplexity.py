"""Held-out perplexity: how well a model predicts text it was never trained on.

The demo corpus is the Python documentation bundled with the interpreter, taken whole
by pretraining (there is no corpus split), so the held-out text is this project's own
`docs/*.md` — written here, never part of any training set. Every model of an A/B run
is scored on the same texts; `text_sha256` in the result says which.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from chatstack import project
from chatstack.evaluation.models import LoadedModel


@dataclass(frozen=True)
class Perplexity:
    perplexity: float
    mean_nll: float  # nats per predicted token
    tokens: int  # predicted tokens
    documents: int
    text_sha256: str


def default_held_out_texts() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted((project.ROOT / "docs").glob("*.md"))}


def read_texts(paths: list[Path]) -> dict[str, str]:
    """Text files, or every *.md / *.txt under a folder."""
    texts: dict[str, str] = {}
    for path in map(Path, paths):
        files = sorted(f for f in path.rglob("*") if f.suffix in {".md", ".txt"}) if path.is_dir() else [path]
        if not files or not all(f.is_file() for f in files):
            raise ValueError(f"held_out: {path} is not a text file or a folder holding .md/.txt files")
        texts.update({str(f): f.read_text(encoding="utf-8") for f in files})
    return texts


def windows(ids: list[int], length: int) -> list[list[int]]:
    """Non-overlapping windows of `length` ids; the last one may be shorter (>= 2 ids)."""
    return [ids[i:i + length] for i in range(0, len(ids), length) if len(ids[i:i + length]) >= 2]


def perplexity(loaded: LoadedModel, texts: dict[str, str], window: int = 256, batch_size: int = 8) -> Perplexity:
    """Token-weighted mean negative log-likelihood over every window of every text."""
    if not texts:
        raise ValueError("held_out: no texts to score")
    if not 2 <= window <= loaded.max_positions:
        raise ValueError(f"window must be in [2, {loaded.max_positions}], got {window}")
    chunks = [w for text in texts.values()
              for w in windows(loaded.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"], window)]
    total_nll, total_tokens = 0.0, 0
    for start in range(0, len(chunks), batch_size):
        nll, count = _batch_nll(loaded.model, chunks[start:start + batch_size])
        total_nll, total_tokens = total_nll + nll, total_tokens + count
    digest = hashlib.sha256("\0".join(texts[k] for k in sorted(texts)).encode("utf-8")).hexdigest()
    mean = total_nll / total_tokens
    return Perplexity(math.exp(mean), mean, total_tokens, len(texts), digest)


def _batch_nll(model: torch.nn.Module, chunks: list[list[int]]) -> tuple[float, int]:
    width = max(map(len, chunks))
    ids = torch.zeros(len(chunks), width, dtype=torch.long)  # (B, T)
    mask = torch.zeros(len(chunks), width, dtype=torch.long)
    for row, chunk in enumerate(chunks):
        ids[row, :len(chunk)] = torch.tensor(chunk)
        mask[row, :len(chunk)] = 1
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()  # (B, T-1, V)
    targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="sum")
    return float(nll), int((targets != -100).sum())
