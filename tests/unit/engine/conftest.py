"""Session fixtures: a tiny random-init Llama (GQA, untied head, vocab 256) and its HF references."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.engine.helpers import MAX_NEW, PROMPTS, hf_greedy, one_torch_thread, save_random_llama


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return save_random_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def references(tiny_llama) -> dict[tuple[int, ...], list[int]]:
    """HF `generate` greedy continuations of PROMPTS, computed independently of the engine."""
    return {prompt: hf_greedy(tiny_llama, prompt, MAX_NEW) for prompt in PROMPTS}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with one_torch_thread():
        yield
