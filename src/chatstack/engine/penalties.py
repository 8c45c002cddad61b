"""Repetition, presence and frequency penalties, applied to a batch of logit rows at once.

- repetition (HF / CTRL semantics): every token present in prompt + output has its logit
  divided by the penalty when positive and multiplied by it when negative;
- presence: `presence_penalty` subtracted once from every token the output contains;
- frequency: `frequency_penalty` subtracted once per occurrence in the output.
"""

from __future__ import annotations

import torch

from chatstack.engine.sequence import Sequence


def _output_counts(seqs: list[Sequence], vocab: int, device: torch.device, prompt_too: bool) -> torch.Tensor:
    """(S, vocab) occurrence counts of each sequence's output tokens (and prompt ones if asked)."""
    rows, ids = [], []
    for row, seq in enumerate(seqs):
        tokens = seq.token_ids if prompt_too else seq.completion_token_ids
        rows.extend([row] * len(tokens))
        ids.extend(tokens)
    counts = torch.zeros(len(seqs), vocab, device=device)
    if ids:
        index = (torch.tensor(rows, device=device), torch.tensor(ids, device=device))
        counts.index_put_(index, torch.ones(len(ids), device=device), accumulate=True)
    return counts


def apply_penalties(logits: torch.Tensor, seqs: list[Sequence]) -> torch.Tensor:
    """logits: (S, vocab) float32, row i belonging to seqs[i]; returns the penalised rows."""
    rows = [i for i, seq in enumerate(seqs) if seq.sampling.penalised]
    if not rows:
        return logits
    picked = [seqs[i] for i in rows]
    vocab, device = logits.shape[-1], logits.device
    scores = logits[rows]
    as_column = lambda values: torch.tensor(values, dtype=scores.dtype, device=device)[:, None]  # noqa: E731
    if any(seq.sampling.repetition_penalty != 1 for seq in picked):
        seen = _output_counts(picked, vocab, device, prompt_too=True) > 0
        penalty = as_column([seq.sampling.repetition_penalty for seq in picked])
        penalised = torch.where(scores < 0, scores * penalty, scores / penalty)
        scores = torch.where(seen, penalised, scores)
    if any(seq.sampling.presence_penalty or seq.sampling.frequency_penalty for seq in picked):
        counts = _output_counts(picked, vocab, device, prompt_too=False)
        presence = as_column([seq.sampling.presence_penalty for seq in picked])
        frequency = as_column([seq.sampling.frequency_penalty for seq in picked])
        scores = scores - frequency * counts - presence * (counts > 0).to(scores.dtype)
    logits = logits.clone()
    logits[rows] = scores
    return logits
