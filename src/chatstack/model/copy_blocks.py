"""Copy blocks: spans of the corpus written twice, what grows the copying heads a reader needs
(docs/training.md, "A base that copies", "Copy warm-up")."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from chatstack.model.pretrain import PretrainConfig

CORPUS_SPAN = (16, 100)  # tokens per shuffled span in the copy blocks mixed into corpus batches
WARMUP_SPAN = (8, 24)  # and in the short blocks of the copy warm-up


def copy_block(tokens: torch.Tensor, seq_len: int, rng: random.Random,
               span: tuple[int, int] = CORPUS_SPAN, gap: int = 30) -> torch.Tensor:
    """`seq_len` tokens of spans written twice: `span` (16–100) corpus tokens in shuffled order,
    up to `gap` tokens of running text, the same shuffled span again, and so on.  # (seq_len,)

    Shuffling leaves nothing but the earlier copy to predict the second one from, so the loss
    on it falls only once the model attends back to where the current token occurred before
    and copies what followed: the circuit that quoting a retrieved passage needs.
    """
    out: list[int] = []
    while len(out) < seq_len:
        length = rng.randint(*span)
        start = rng.randrange(len(tokens) - length)
        shuffled = tokens[start:start + length].tolist()
        rng.shuffle(shuffled)
        gap_start = rng.randrange(len(tokens) - gap)
        out += shuffled + tokens[gap_start:gap_start + rng.randint(0, gap)].tolist() + shuffled
    return torch.tensor(out[:seq_len], dtype=torch.long)


def with_copy_blocks(batch: torch.Tensor, tokens: torch.Tensor, fraction: float, rng: random.Random) -> torch.Tensor:
    """`batch` with its last round(rows * fraction) rows replaced by copy blocks.  # (B, T)"""
    count = round(len(batch) * fraction)
    if count == 0:
        return batch
    copies = torch.stack([copy_block(tokens, batch.shape[1], rng) for _ in range(count)])
    return torch.cat([batch[: len(batch) - count], copies])


def copy_warmup_batch(tokens: torch.Tensor, cfg: PretrainConfig, rng: random.Random) -> torch.Tensor:
    """A batch of short copy blocks only, for the warm-up steps.  # (copy_warmup_rows, copy_warmup_seq_len)"""
    return torch.stack([copy_block(tokens, cfg.copy_warmup_seq_len, rng, WARMUP_SPAN, gap=8)
                        for _ in range(cfg.copy_warmup_rows)])
