"""Next-token choice for a batch, vectorised over rows with per-request settings.

Order, as in HF `generate`: penalties (greedy rows too), the quote-bound mask of requests that
carry one (`backends/copy_constraint.py`), then for sampling rows
temperature → top-k → top-p → min-p, then one seeded draw per row from its own
generator. Greedy rows take the argmax of the penalised logits, so without penalties
they are token-identical to HF greedy decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from chatstack.backends.base import SamplingParams, TokenLogprob
from chatstack.backends.sampling import token_logprobs
from chatstack.engine.cpu_kernels import argmax_kernel
from chatstack.engine.penalties import apply_penalties
from chatstack.engine.sequence import Sequence


@dataclass(frozen=True)
class Sampled:
    tokens: list[int]
    logprobs: list[TokenLogprob | None]  # None for rows that did not ask for logprobs


def filter_logits(logits: torch.Tensor, params: list[SamplingParams]) -> torch.Tensor:
    """Temperature-scaled logits (R, vocab) with tokens outside top-k / top-p / min-p set to -inf."""
    device, vocab = logits.device, logits.shape[-1]
    column = lambda values: torch.tensor(values, dtype=logits.dtype, device=device)[:, None]  # noqa: E731
    scaled = logits / column([p.temperature for p in params])
    ordered, order = torch.sort(scaled, dim=-1, descending=True)
    # top-k: keep every token at least as large as the k-th largest (0 or >= vocab disables)
    k = torch.tensor([p.top_k if 0 < p.top_k < vocab else vocab for p in params], device=device)
    kth = ordered.gather(1, (k - 1)[:, None])
    ordered = ordered.masked_fill(ordered < kth, float("-inf"))
    # top-p: drop a token once the tokens ranked above it already cover top_p (1 disables)
    probs = torch.softmax(ordered, dim=-1)
    top_p = column([p.top_p for p in params])
    ordered = ordered.masked_fill(((probs.cumsum(dim=-1) - probs) >= top_p) & (top_p < 1), float("-inf"))
    # min-p: drop tokens below min_p x the most likely token's probability (0 disables)
    probs = torch.softmax(ordered, dim=-1)
    ordered = ordered.masked_fill(probs < column([p.min_p for p in params]) * probs[:, :1], float("-inf"))
    return torch.empty_like(scaled).scatter_(1, order, ordered)


def greedy_tokens(logits: torch.Tensor) -> list[int]:
    """Row-wise argmax: the C kernel on the CPU (torch's CPU argmax does not vectorise), torch elsewhere."""
    kernel = argmax_kernel() if logits.device.type == "cpu" and logits.dtype == torch.float32 else None
    return kernel(logits) if kernel is not None else torch.argmax(logits, dim=-1).tolist()


def apply_copy_masks(logits: torch.Tensor, seqs: list[Sequence]) -> torch.Tensor:
    """Rows of quote-bound requests masked to the tokens their constraint allows (a copy when any is)."""
    rows = [i for i, seq in enumerate(seqs) if seq.copy is not None]
    if not rows:
        return logits
    logits = logits.clone()
    for row in rows:
        seqs[row].copy.sync(seqs[row].completion_token_ids)
        logits[row] = seqs[row].copy.mask(logits[row])
    return logits


def sample(logits: torch.Tensor, seqs: list[Sequence]) -> Sampled:
    """logits: (S, vocab), row i belonging to seqs[i]."""
    if len(seqs) == 1 and seqs[0].samples_by_argmax:
        return Sampled(greedy_tokens(logits.float()), [None])  # a lone plain greedy decode: the argmax is all
    raw = logits
    logits = apply_copy_masks(apply_penalties(logits.float(), seqs), seqs)
    tokens = greedy_tokens(logits)
    rows = [i for i, seq in enumerate(seqs) if not seq.sampling.greedy]
    if rows:
        probs = torch.softmax(filter_logits(logits[rows], [seqs[i].sampling for i in rows]), dim=-1)
        for row, dist in zip(rows, probs):
            tokens[row] = int(torch.multinomial(dist, 1, generator=seqs[row].generator))
    logprobs: list[TokenLogprob | None] = [None] * len(seqs)
    wanted = [i for i, seq in enumerate(seqs) if seq.sampling.logprobs is not None]
    if wanted:
        reports = token_logprobs(raw[wanted], [tokens[i] for i in wanted], [seqs[i].sampling.logprobs for i in wanted])
        for row, report in zip(wanted, reports):
            logprobs[row] = report
    return Sampled(tokens, logprobs)
