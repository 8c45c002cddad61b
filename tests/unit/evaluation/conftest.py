"""Two tiny real models sharing one tokenizer: `tiny_pair` = (base, other), differently initialised."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from chatstack.alignment.reader_data import reader_conversations
from chatstack.model.architecture import TinyLlamaSpec, to_llama_config
from chatstack.model.corpus import documents
from chatstack.model.tokenizer import MIN_VOCAB_SIZE, train_tokenizer
from chatstack.text.chat_template import render_chat

SPEC = TinyLlamaSpec(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
                     max_position_embeddings=256)


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory) -> tuple[Path, Path]:
    texts = documents(max_chars=20_000) + [render_chat(c, False) for c in reader_conversations(10, 3)]
    tokenizer = train_tokenizer(texts, vocab_size=MIN_VOCAB_SIZE)
    folders = []
    for seed, name in ((0, "base"), (1, "other")):
        folder = tmp_path_factory.mktemp(f"tiny-{name}")
        torch.manual_seed(seed)
        LlamaForCausalLM(to_llama_config(SPEC, tokenizer)).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders.append(folder)
    # the second one records the first as the model it was fine-tuned from, as DPO/SFT summaries do
    (folders[1] / "dpo_summary.json").write_text(json.dumps({"base_model": str(folders[0]), "steps": 1}))
    return folders[0], folders[1]
