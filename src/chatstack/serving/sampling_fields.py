"""Sampling fields of a chat request, shared by `preprocess` (early rejection) and `generate`.

Names follow the TensorRT-LLM backend's ensemble (`min_p`, `repetition_penalty`,
`presence_penalty`, `frequency_penalty`, `return_log_probs`); `top_log_probs` asks for
that many most likely alternatives per token. Logprobs go back as JSON in `output_log_probs`.
"""

from __future__ import annotations

import json
from typing import Sequence

from chatstack.backends.base import MAX_LOGPROBS, SamplingParams, TokenLogprob
from chatstack.config import DeploymentConfig
from chatstack.serving import fields

MAX_STOP_WORDS = 16


def resolve_max_tokens(tensors: fields.Tensors, cfg: DeploymentConfig) -> int:
    requested = fields.optional_int(tensors, "max_tokens", 1, cfg.generation.max_tokens_limit)
    return cfg.generation.default_max_tokens if requested is None else requested


def parse_logprobs(tensors: fields.Tensors) -> int | None:
    """None when not asked for; else how many top alternatives to return per token."""
    wanted = fields.optional_bool(tensors, "return_log_probs")
    top = fields.optional_int(tensors, "top_log_probs", 0, MAX_LOGPROBS)
    if top and not wanted:
        raise ValueError("top_log_probs needs return_log_probs set to true")
    return (top or 0) if wanted else None


def parse_sampling(tensors: fields.Tensors, cfg: DeploymentConfig) -> SamplingParams:
    gen = cfg.generation
    temperature = fields.optional_float(tensors, "temperature")
    top_p = fields.optional_float(tensors, "top_p")
    top_k = fields.optional_int(tensors, "top_k", 0)
    optional = {name: value for name in ("min_p", "repetition_penalty", "presence_penalty", "frequency_penalty")
                if (value := fields.optional_float(tensors, name)) is not None}
    optional.setdefault("frequency_penalty", gen.default_frequency_penalty)
    return SamplingParams(
        max_tokens=resolve_max_tokens(tensors, cfg),
        temperature=gen.default_temperature if temperature is None else temperature,
        top_p=gen.default_top_p if top_p is None else top_p,
        top_k=gen.default_top_k if top_k is None else top_k,
        seed=fields.optional_int(tensors, "seed", 0),
        ignore_eos=bool(fields.optional_bool(tensors, "ignore_eos")),
        logprobs=parse_logprobs(tensors),
        **optional,
    )


def parse_stop_words(tensors: fields.Tensors) -> tuple[str, ...]:
    stop_words = fields.text_list(tensors, "stop_words")
    if len(stop_words) > MAX_STOP_WORDS:
        raise ValueError(f"stop_words allows at most {MAX_STOP_WORDS} entries, got {len(stop_words)}")
    return stop_words


def logprobs_json(reports: Sequence[TokenLogprob], tokenizer) -> str:
    """`output_log_probs`: one entry per generated token, in order."""
    def entry(token_id: int, logprob: float) -> dict:
        return {"token_id": token_id, "token": tokenizer.decode([token_id]), "logprob": round(logprob, 6)}

    return json.dumps([entry(r.token_id, r.logprob) | {"top_logprobs": [entry(t, lp) for t, lp in r.top]}
                       for r in reports], ensure_ascii=False)


def merge_logprobs(pieces: Sequence[str]) -> str:
    """Join the `output_log_probs` of consecutive deltas into one list."""
    return json.dumps([entry for piece in pieces for entry in json.loads(piece)], ensure_ascii=False)
