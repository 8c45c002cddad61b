"""Next-token cross-entropy fused with the LM head, computed in row chunks.

The plain path materialises (rows, vocab) logits, a log-softmax of the same size and, in the
backward pass, a third array of that size: for the demo's pretraining step (2,048 rows ×
4,096 tokens, 32 MiB each) that traffic costs more than the LM-head matmuls themselves on a
two-core CPU. Here each chunk of rows gets its logits, its log-sum-exp and its gradient in one
cache-sized buffer, and the gradients of the hidden states and of the head weight are
accumulated during the forward pass; backward only scales them. Rows whose target is
`IGNORE_INDEX` add nothing; `shifted_targets` leaves them out before the head runs at all,
which in SFT (loss on assistant tokens only) skips most of the head's work.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100
CHUNK_ROWS = 512  # 512 × 4,096 float32 logits = 8 MiB: stays in a 32 MiB L3 next to the weights


class _LinearCrossEntropy(torch.autograd.Function):
    """Summed loss and the count of argmax hits over the rows whose target is kept; the
    gradients of the sum are accumulated during the forward pass."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                chunk_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        # hidden (N, H), weight (V, H), targets (N,)
        needs_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_hidden = torch.zeros_like(hidden) if needs_grad else None
        grad_weight = torch.zeros_like(weight) if needs_grad else None
        total, correct = hidden.new_zeros(()), torch.zeros((), dtype=torch.long)
        for start in range(0, hidden.shape[0], chunk_rows):
            rows = slice(start, start + chunk_rows)
            h, t = hidden[rows], targets[rows]
            keep = t != IGNORE_INDEX
            safe = torch.where(keep, t, 0)
            logits = h @ weight.T  # (c, V)
            correct += ((logits.argmax(dim=1) == t) & keep).sum()
            lse = torch.logsumexp(logits, dim=1)  # (c,)
            total = total + torch.where(keep, lse - logits.gather(1, safe[:, None]).squeeze(1), 0.0).sum()
            if not needs_grad:
                continue
            grad_logits = logits.sub_(lse[:, None]).exp_()  # the softmax, in place of the logits
            grad_logits[torch.arange(len(t)), safe] -= 1.0
            grad_logits.mul_(keep.to(grad_logits.dtype)[:, None])  # d(summed loss)/d(logits)
            grad_hidden[rows] = grad_logits @ weight
            grad_weight.addmm_(grad_logits.T, h)
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.mark_non_differentiable(correct)
        return total, correct

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor, grad_correct: torch.Tensor | None = None):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_total, grad_weight * grad_total, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         chunk_rows: int = CHUNK_ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy of `hidden @ weight.T` against `targets`, and how many rows the
    argmax predicts right, over the rows whose target is not `IGNORE_INDEX`, without holding
    the full logits.  hidden (N, H), weight (V, H), targets (N,) -> (loss sum, correct count)"""
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden (N, H) and weight (V, H) must share H, got {tuple(hidden.shape)} "
                         f"and {tuple(weight.shape)}")
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"targets must have shape ({hidden.shape[0]},), got {tuple(targets.shape)}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    return _LinearCrossEntropy.apply(hidden, weight, targets, chunk_rows)


def shifted_targets(hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The hidden states that predict a labelled next token, and those tokens: position i
    predicts `labels[:, i + 1]`; positions whose next label is `IGNORE_INDEX` are left out, so
    the LM head runs only where a loss is taken.  hidden (B, T, H), labels (B, T) -> (N, H), (N,)"""
    targets = labels[:, 1:]
    kept = targets != IGNORE_INDEX
    return hidden[:, :-1][kept], targets[kept]


def causal_lm_loss(model, input_ids: torch.Tensor) -> torch.Tensor:
    """The mean next-token loss of a Llama-family `model` on `input_ids` (B, T), as
    `model(input_ids=..., labels=input_ids).loss` computes it, through `linear_cross_entropy`."""
    hidden = model.model(input_ids=input_ids).last_hidden_state  # (B, T, H)
    rows, targets = shifted_targets(hidden, input_ids)
    total, _ = linear_cross_entropy(rows, model.lm_head.weight, targets)
    return total / max(len(targets), 1)
