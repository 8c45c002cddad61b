"""Tiny random-init Llama checkpoints, HF greedy references and the engine-idle check."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

CONTEXT = 256
VOCAB = 256
# Kernel tests skip only where no C compiler exists; where one does, a kernel that fails to build fails them.
needs_c_compiler = pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler here")


@contextmanager
def one_torch_thread():
    """Tiny models run best on one thread; two OpenMP threads thrash when other jobs share the 2 cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def save_random_llama(path: Path, seed: int = 0, **overrides) -> Path:
    settings = dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=160, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=CONTEXT,
        tie_word_embeddings=False, bos_token_id=None, eos_token_id=None, pad_token_id=None,
    ) | overrides
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(LlamaConfig(**settings))
        for name, param in model.named_parameters():  # larger weights than the init: peaked logits, no near-ties
            if name.endswith(".bias"):  # biases start at zero, which would leave every bias path untested
                param.data.normal_(0.0, 0.5)
            else:
                param.data.mul_(4.0 if param.dim() > 1 else 1.0)
    model.save_pretrained(path)
    return path


def hf_greedy(model_dir: Path, prompt, max_new_tokens: int) -> list[int]:
    model = LlamaForCausalLM.from_pretrained(model_dir).eval()
    input_ids = torch.tensor([list(prompt)])  # (1, T)
    with torch.inference_mode(), one_torch_thread():
        output = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                                max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, eos_token_id=None)
    return output[0, len(prompt):].tolist()  # (max_new_tokens,)


PROMPTS = (
    (5, 17, 33, 2, 9),
    (100, 3, 3, 3, 64, 1, 0, 127, 42, 7, 8, 200, 201, 17, 90, 91, 92, 93),
    tuple((i * 37 + 11) % VOCAB for i in range(45)),
    (250,),
)
MAX_NEW = 24


def assert_engine_idle(engine) -> None:
    """No sequence left behind and every KV block back in the pool."""
    manager = engine.scheduler.block_manager
    assert not engine.sequences and not engine.has_unfinished()
    assert manager.num_free_blocks == manager.num_blocks
    assert all(block.ref_count == 0 for block in manager.blocks)
