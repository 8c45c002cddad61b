"""Next-token choice for a batch: one argmax for all greedy rows, seeded draws for the rest.

Non-greedy rows reuse `backends.sampling` so a seeded request draws the same tokens
on every backend.
"""

from __future__ import annotations

import torch

from chatstack.backends.sampling import sample_next
from chatstack.engine.sequence import Sequence


def sample(logits: torch.Tensor, seqs: list[Sequence]) -> list[int]:
    """logits: (S, vocab), row i belonging to seqs[i]."""
    tokens = torch.argmax(logits, dim=-1).tolist()  # (S,)
    for row, seq in enumerate(seqs):
        if not seq.sampling.greedy:
            tokens[row] = sample_next(logits[row], seq.sampling, seq.generator)
    return tokens
