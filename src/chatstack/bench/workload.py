"""The engine benchmark's inputs: token-id workloads, a random Llama checkpoint, progress lines, and the torch
thread count a microbenchmark runs at."""

from __future__ import annotations

import contextlib
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from chatstack.backends.base import GenerationRequest, SamplingParams


@contextlib.contextmanager
def torch_threads(count: int):
    """Torch on `count` threads inside, the caller's count back after (tests call the microbenchmarks in-process)."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class Workload:
    prompts: tuple[tuple[int, ...], ...]
    max_tokens: tuple[int, ...]

    @classmethod
    def mixed(cls, n: int, prompt_range, output_range, vocab: int, seed: int) -> "Workload":
        rng = random.Random(seed)
        prompts = tuple(tuple(rng.randrange(3, vocab) for _ in range(rng.randint(*prompt_range))) for _ in range(n))
        return cls(prompts, tuple(rng.randint(*output_range) for _ in range(n)))

    def requests(self, tag: str) -> list[GenerationRequest]:
        return [GenerationRequest(f"{tag}{i}", p, SamplingParams(max_tokens=m, temperature=0.0, ignore_eos=True))
                for i, (p, m) in enumerate(zip(self.prompts, self.max_tokens))]


def random_llama(path: Path, hidden: int, layers: int, vocab: int, seed: int) -> Path:
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 11 // 4 // 32 * 32,
                         num_hidden_layers=layers, num_attention_heads=hidden // 64, num_key_value_heads=max(1, hidden // 256),
                         max_position_embeddings=2048, tie_word_embeddings=True, eos_token_id=None, bos_token_id=None)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def latency_workload(args, vocab: int, concurrency: int) -> Workload:
    return Workload.mixed(max(4, 2 * concurrency), (args.min_prompt, args.max_prompt),
                          (args.latency_output, args.latency_output), vocab, args.seed + concurrency)


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
