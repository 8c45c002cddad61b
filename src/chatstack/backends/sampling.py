"""Helpers every backend shares: dtype names, per-request seeded generators and logprob reports.

Logit processing itself lives with each backend: `engine/sampler.py` (vectorised over
the native engine's batch) and `backends/hf_logits.py` (transformers' logits processors).
"""

from __future__ import annotations

import torch

from chatstack.backends.base import SamplingParams, TokenLogprob

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}  # config names


def mix_seed(seed: int) -> int:
    """SplitMix64 finaliser: spreads all 64 bits of a request seed over the low bits.

    torch's CPU generator keys its stream on the low 32 bits of the seed, so seeds that
    differ only in their high bits would otherwise give identical samples.
    """
    z = (seed + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


def make_generator(params: SamplingParams, device: torch.device | str = "cpu") -> torch.Generator | None:
    if params.seed is None:
        return None
    generator = torch.Generator(device=device)
    generator.manual_seed(mix_seed(params.seed))
    return generator


def token_logprobs(logits: torch.Tensor, tokens: list[int], top_n: list[int]) -> list[TokenLogprob]:
    """Logprob reports for rows of raw model logits (R, vocab): row i chose tokens[i] and
    wants its top_n[i] most likely alternatives. Computed in float32 before any penalty,
    temperature or filter, so they describe the model, not the sampling settings."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    chosen = logprobs.gather(1, torch.tensor(tokens, device=logits.device)[:, None]).squeeze(1).tolist()
    widest = min(max(top_n, default=0), logprobs.shape[-1])
    best_values, best_ids = (torch.topk(logprobs, widest, dim=-1) if widest else (logprobs[:, :0], logprobs[:, :0]))
    best_values, best_ids = best_values.tolist(), best_ids.long().tolist()
    return [
        TokenLogprob(token, lp, tuple(zip(best_ids[i][:n], best_values[i][:n])))
        for i, (token, lp, n) in enumerate(zip(tokens, chosen, top_n))
    ]
