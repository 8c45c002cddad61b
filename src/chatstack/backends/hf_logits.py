"""The HF backend's logit processing, built from transformers' own logits processors.

Same settings and order as the native sampler (`engine/sampler.py`) and HF `generate`:
penalties first (greedy requests too), then temperature → top-k → top-p → min-p for
sampling requests. transformers has no presence / frequency penalty, so that one
processor is ours (OpenAI semantics over the generated tokens only), as is the quote-bound
mask (`copy_constraint.py`), which comes after the penalties and before the warpers.
"""

from __future__ import annotations

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from chatstack.backends.base import SamplingParams
from chatstack.backends.copy_constraint import CopyTracker


class PresenceFrequencyPenalty(LogitsProcessor):
    """scores -= frequency x count + presence x (count > 0), counting output tokens only."""

    def __init__(self, presence: float, frequency: float, num_prompt_tokens: int):
        self.presence = presence
        self.frequency = frequency
        self.num_prompt_tokens = num_prompt_tokens

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        output = input_ids[:, self.num_prompt_tokens:]
        counts = torch.zeros_like(scores).scatter_add_(1, output, torch.ones_like(output, dtype=scores.dtype))
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


class CopyMask(LogitsProcessor):
    """Quote-bound decoding (`copy_constraint.py`) for one sequence (batch of 1)."""

    def __init__(self, tracker: CopyTracker, num_prompt_tokens: int):
        self.tracker = tracker
        self.num_prompt_tokens = num_prompt_tokens

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[0] != 1:
            raise ValueError("copy-constrained decoding runs one sequence at a time")
        self.tracker.sync(input_ids[0, self.num_prompt_tokens:].tolist())
        return self.tracker.mask(scores[0])[None]


def logits_processors(params: SamplingParams, num_prompt_tokens: int,
                      copy: CopyTracker | None = None) -> LogitsProcessorList:
    processors = LogitsProcessorList()
    if params.repetition_penalty != 1:
        processors.append(RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
    if params.presence_penalty or params.frequency_penalty:
        processors.append(PresenceFrequencyPenalty(params.presence_penalty, params.frequency_penalty,
                                                   num_prompt_tokens))
    if copy is not None:
        processors.append(CopyMask(copy, num_prompt_tokens))
    if params.greedy:
        return processors
    if params.temperature != 1:
        processors.append(TemperatureLogitsWarper(params.temperature))
    if params.top_k > 0:
        processors.append(TopKLogitsWarper(params.top_k))
    if params.top_p < 1:
        processors.append(TopPLogitsWarper(params.top_p))
    if params.min_p > 0:
        processors.append(MinPLogitsWarper(params.min_p))
    return processors


def choose(input_ids: torch.Tensor, logits: torch.Tensor, processors: LogitsProcessorList, params: SamplingParams,
           generator: torch.Generator | None) -> int:
    """Next token for one sequence: input_ids (1, T) prompt + output so far, logits (vocab,)."""
    scores = processors(input_ids, logits.float()[None])[0]
    if params.greedy:
        return int(torch.argmax(scores))
    return int(torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator))
