"""Sampling fields of a chat request, shared by `preprocess` (early rejection) and `generate`."""

from __future__ import annotations

from chatstack.backends.base import SamplingParams
from chatstack.config import DeploymentConfig
from chatstack.serving import fields

MAX_STOP_WORDS = 16


def resolve_max_tokens(tensors: fields.Tensors, cfg: DeploymentConfig) -> int:
    requested = fields.optional_int(tensors, "max_tokens", 1, cfg.generation.max_tokens_limit)
    return cfg.generation.default_max_tokens if requested is None else requested


def parse_sampling(tensors: fields.Tensors, cfg: DeploymentConfig) -> SamplingParams:
    gen = cfg.generation
    temperature = fields.optional_float(tensors, "temperature")
    top_p = fields.optional_float(tensors, "top_p")
    top_k = fields.optional_int(tensors, "top_k", 0)
    return SamplingParams(
        max_tokens=resolve_max_tokens(tensors, cfg),
        temperature=gen.default_temperature if temperature is None else temperature,
        top_p=gen.default_top_p if top_p is None else top_p,
        top_k=gen.default_top_k if top_k is None else top_k,
        seed=fields.optional_int(tensors, "seed", 0),
        ignore_eos=bool(fields.optional_bool(tensors, "ignore_eos")),
    )


def parse_stop_words(tensors: fields.Tensors) -> tuple[str, ...]:
    stop_words = fields.text_list(tensors, "stop_words")
    if len(stop_words) > MAX_STOP_WORDS:
        raise ValueError(f"stop_words allows at most {MAX_STOP_WORDS} entries, got {len(stop_words)}")
    return stop_words
