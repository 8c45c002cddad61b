"""The one-call decode step's weight layout: column panels, and the 32-bit words some panels hold.

A weight (in, out) is stored in column panels of PANEL (kernels/decode_step.c): panel t holds columns t * PANEL
onwards for all rows, row after row, so a matmul reads it front to back as one stream. int4 codes and bfloat16 pairs
go in as words of several rows (`row_words`) laid out the same way.
"""

from __future__ import annotations

import torch

PANEL = 64  # columns per weight panel of the one-call decode step (kernels/decode_step.c)


def panels(weight_t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Copy an (in, out) weight into `out` (in * out values, contiguous) in the decode step's column panels:
    panel t holds columns t * PANEL onwards (the last one what is left), all rows, row after row."""
    rows, cols = weight_t.shape
    if out.numel() != rows * cols or not out.is_contiguous():
        raise ValueError(f"out must be {rows * cols} contiguous values, got {out.numel()}")
    full = cols // PANEL * PANEL
    out[:rows * full].view(cols // PANEL, rows, PANEL).copy_(weight_t[:, :full].reshape(rows, -1, PANEL).transpose(0, 1))
    out[rows * full:].view(rows, cols - full).copy_(weight_t[:, full:])
    return out


def row_words(t: torch.Tensor) -> torch.Tensor:
    """A (rows, cols) matrix of 1- or 2-byte elements as (rows * size / 4, cols) 32-bit words, each holding
    4 / size consecutive rows of its column side by side, the first in the low bits (little-endian): the int4
    panels' words of eight codes (from Int4Linear's bytes of two) and the bfloat16 panels' pairs."""
    rows, cols = t.shape
    per_word = 4 // t.element_size()
    if t.element_size() not in (1, 2) or rows % per_word:
        raise ValueError(f"rows of {t.element_size()}-byte elements go {per_word} to a word: {rows} rows do not")
    return t.view(rows // per_word, per_word, cols).transpose(1, 2).contiguous().view(torch.int32).view(-1, cols)
