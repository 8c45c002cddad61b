"""Pretraining on a tiny real model: it learns, saves, reloads offline and generates."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from chatstack.model.architecture import TinyLlamaSpec, to_llama_config
from chatstack.model.copy_blocks import copy_block, copy_warmup_batch, with_copy_blocks
from chatstack.model.pretrain import (
    SUMMARY_FILE,
    PretrainConfig,
    ensure_demo_model,
    learning_rate,
    main,
    mix_texts,
    pack_blocks,
    train,
    training_texts,
)
from chatstack.model.pretrain_checkpoint import checkpoint_path, load_checkpoint
from chatstack.model.tokenizer import train_tokenizer
from chatstack.text.chat_template import END_OF_TURN, EOS, Message, render_chat

TINY_SPEC = TinyLlamaSpec(
    hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
    intermediate_size=128, max_position_embeddings=128,
)


def tiny_config(output_dir, **overrides) -> PretrainConfig:
    values = dict(
        output_dir=output_dir, vocab_size=512, spec=TINY_SPEC, seq_len=64, batch_size=4,
        lr=3e-3, warmup_steps=2, time_budget_s=10.0, max_steps=6,
        max_corpus_chars=60_000, log_every=2,
    )
    return PretrainConfig(**(values | overrides))


def test_training_changes_parameters_with_finite_loss(tmp_path):
    cfg = tiny_config(tmp_path / "unused")
    texts = training_texts(cfg)
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    blocks = pack_blocks(texts, tokenizer, cfg.seq_len)  # (num_blocks, seq_len)
    model = LlamaForCausalLM(to_llama_config(cfg.spec, tokenizer))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}

    summary = train(model, blocks, cfg)

    assert 1 <= summary.steps <= cfg.max_steps
    assert summary.tokens_seen == summary.steps * cfg.batch_size * cfg.seq_len
    assert math.isfinite(summary.final_loss)
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) == len(before)


def test_main_saves_a_folder_that_reloads_offline_and_generates(tmp_path):
    output_dir = main(tiny_config(tmp_path / "model", checkpoint_every=2))

    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging or checkpoint left over
    assert output_dir.stat().st_mode & 0o777 == 0o755
    model = AutoModelForCausalLM.from_pretrained(output_dir, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(output_dir, local_files_only=True)
    stop_ids = [tokenizer.convert_tokens_to_ids(t) for t in (END_OF_TURN, EOS)]
    assert model.generation_config.eos_token_id == stop_ids
    assert model.config.vocab_size == len(tokenizer)

    prompt = render_chat([Message("user", "What is a list comprehension?")])
    assert tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is a list comprehension?"}],
        tokenize=False, add_generation_prompt=True,
    ) == prompt
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    output = model.generate(**inputs, max_new_tokens=8, do_sample=False)  # (1, T + new)
    assert output.shape[1] > inputs["input_ids"].shape[1]

    summary = json.loads((output_dir / SUMMARY_FILE).read_text())
    assert summary["params"] == sum(p.numel() for p in model.parameters())
    assert math.isfinite(summary["final_loss"])
    assert summary["recipe"]["max_steps"] == 6 and summary["recipe"]["spec"]["hidden_size"] == 64


def test_ensure_demo_model_trains_from_a_recipe_with_the_given_budget(tmp_path):
    recipe = tmp_path / "pretrain.yaml"
    recipe.write_text("vocab_size: 512\nseq_len: 64\nbatch_size: 4\nmax_steps: 4\nmax_corpus_chars: 60000\n"
                      "copy_warmup_steps: 2\ncopy_warmup_rows: 3\ntime_budget_s: 1000\n"
                      "spec: {hidden_size: 64, num_layers: 2, num_heads: 4, num_kv_heads: 2, "
                      "intermediate_size: 128, max_position_embeddings: 128}\n")
    output_dir = ensure_demo_model(tmp_path / "model", time_budget_s=300.0, recipe=recipe)
    summary = json.loads((output_dir / SUMMARY_FILE).read_text())
    assert summary["steps"] == 4 and summary["tokens_seen"] == 2 * 3 * 64 + 2 * 4 * 64
    assert (summary["recipe"]["time_budget_s"], summary["recipe"]["copy_warmup_steps"]) == (300.0, 2)


def test_ensure_demo_model_reuses_a_saved_folder(tmp_path):
    for name in ("config.json", "tokenizer.json"):
        (tmp_path / name).write_text("{}")
    assert ensure_demo_model(tmp_path, time_budget_s=1.0) == tmp_path


def test_mix_texts_hits_chat_fraction():
    documents = [f"doc {i} " * 10 for i in range(200)]
    chats = [f"chat {i} " * 10 for i in range(200)]
    mixed = mix_texts(documents, chats, chat_fraction=0.25, seed=0)
    chat_chars = sum(len(t) for t in mixed if t.startswith("chat"))
    assert chat_chars / sum(map(len, mixed)) == pytest.approx(0.25, abs=0.02)
    assert mix_texts(documents, chats, 0.25, seed=0) == mixed


def test_learning_rate_warms_up_then_decays():
    cfg = tiny_config("unused", lr=1.0, warmup_steps=4, min_lr_ratio=0.1)
    warmup = [learning_rate(cfg, step, progress=0.0) for step in range(4)]
    assert warmup == sorted(warmup) and warmup[-1] == 1.0
    assert learning_rate(cfg, 10, progress=0.5) == pytest.approx(0.55)
    assert learning_rate(cfg, 10, progress=1.0) == pytest.approx(0.1)
    held = tiny_config("unused", lr=1.0, warmup_steps=4, copy_warmup_steps=5, copy_warmup_lr=0.3)
    assert [learning_rate(held, step, progress=0.5) for step in (3, 4, 5)] == [1.0, 0.3, pytest.approx(0.55)]


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("num_kv_heads", dict(num_heads=8, num_kv_heads=3)),
        ("num_heads", dict(hidden_size=100, num_heads=8)),
        ("num_layers", dict(num_layers=0)),
        ("rope_theta", dict(rope_theta=0.0)),
    ],
)
def test_spec_rejects_bad_shapes(field, overrides):
    with pytest.raises(ValueError, match=field):
        TinyLlamaSpec(**overrides)


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("seq_len", dict(seq_len=1000)),
        ("chat_fraction", dict(chat_fraction=1.5)),
        ("copy_fraction", dict(copy_fraction=1.0)),
        ("copy_fraction", dict(copy_fraction=-0.1)),
        ("copy_warmup_steps", dict(copy_warmup_steps=-1)),
        ("copy_warmup_steps", dict(copy_warmup_steps=6)),
        ("copy_warmup_rows", dict(copy_warmup_rows=0)),
        ("copy_warmup_lr", dict(copy_warmup_lr=0.0)),
        ("copy_warmup_seq_len", dict(copy_warmup_seq_len=40)),
        ("copy_warmup_seq_len", dict(copy_warmup_seq_len=129)),
        ("vocab_size", dict(vocab_size=10)),
        ("lr", dict(lr=0.0)),
    ],
)
def test_config_rejects_bad_values(field, overrides):
    with pytest.raises(ValueError, match=field):
        tiny_config("unused", **overrides)


def test_config_from_dict_builds_spec_reads_yaml_floats_rejects_unknown_fields():
    cfg = PretrainConfig.from_dict(
        {"output_dir": "out", "lr": "6e-3", "copy_warmup_lr": "2e-3", "spec": {"num_layers": 2, "rope_theta": "1e4"}}
    )
    assert (cfg.lr, cfg.copy_warmup_lr, cfg.spec.num_layers, cfg.spec.rope_theta) == (6e-3, 2e-3, 2, 1e4)
    with pytest.raises(ValueError, match="learning_rate"):
        PretrainConfig.from_dict({"output_dir": "out", "learning_rate": 1e-3})


def test_copy_blocks_write_each_shuffled_span_twice_and_replace_the_last_rows():
    import random

    tokens = torch.arange(1000, 6000)  # distinct ids, so a span's second copy can be found
    block = copy_block(tokens, 256, random.Random(0))
    assert block.shape == (256,) and block.dtype == torch.long
    ids = block.tolist()
    first = ids[:16]
    assert first != sorted(first)  # shuffled, not running text
    later = [i for i in range(16, 256 - 16) if ids[i:i + 16] == first]
    assert later, "the first span occurs again"
    batch = torch.zeros(8, 256, dtype=torch.long)
    mixed = with_copy_blocks(batch, tokens, 0.5, random.Random(0))
    assert mixed.shape == batch.shape and (mixed[:4] == 0).all() and (mixed[4:] >= 1000).all()
    assert with_copy_blocks(batch, tokens, 0.0, random.Random(0)) is batch


def test_copy_warmup_batches_hold_short_spans_written_twice():
    import random

    tokens = torch.arange(1000, 6000)
    cfg = tiny_config("unused", copy_warmup_steps=3, copy_warmup_rows=5, copy_warmup_seq_len=64)
    batch = copy_warmup_batch(tokens, cfg, random.Random(0))
    assert batch.shape == (5, 64) and (batch >= 1000).all()
    for row in batch.tolist():
        first = row[:8]  # every span has at least 8 tokens, and its copy follows within 8 + 24 + 8
        assert any(row[i:i + 8] == first for i in range(8, 41))


def test_warmup_steps_train_on_copy_rows_then_on_corpus_batches(tmp_path):
    cfg = tiny_config(tmp_path / "m", copy_warmup_steps=3, copy_warmup_rows=6, copy_warmup_seq_len=64,
                      time_budget_s=60.0)
    texts = training_texts(cfg)
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    blocks = pack_blocks(texts, tokenizer, cfg.seq_len)
    torch.manual_seed(0)
    summary = train(LlamaForCausalLM(to_llama_config(cfg.spec, tokenizer)), blocks, cfg)
    assert summary.steps == 6
    assert summary.tokens_seen == 3 * 6 * 64 + 3 * cfg.batch_size * cfg.seq_len


def test_a_run_stopped_mid_way_continues_from_its_checkpoint_to_the_same_floats(tmp_path, monkeypatch):
    from chatstack.model import pretrain

    cfg = tiny_config(tmp_path / "model", max_steps=8, time_budget_s=1000.0, checkpoint_every=3,
                      copy_warmup_steps=2, copy_fraction=0.25)
    texts = training_texts(cfg)
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    blocks = pack_blocks(texts, tokenizer, cfg.seq_len)[:10]  # 2 batches an epoch: the resumed run skips epochs

    def fresh(seed):
        torch.manual_seed(seed)
        return LlamaForCausalLM(to_llama_config(cfg.spec, tokenizer))

    straight = fresh(0)
    train(straight, blocks, cfg)

    calls, real_loss = [], pretrain.causal_lm_loss

    def killed_at_step_6(model, batch):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt  # the run is stopped during step 6: the checkpoint of step 3 remains
        return real_loss(model, batch)

    monkeypatch.setattr(pretrain, "causal_lm_loss", killed_at_step_6)
    checkpoint = checkpoint_path(cfg)
    with pytest.raises(KeyboardInterrupt):
        train(fresh(0), blocks, cfg, checkpoint)
    monkeypatch.setattr(pretrain, "causal_lm_loss", real_loss)
    assert checkpoint.is_file()

    resumed = fresh(1)  # other initial weights: everything must come from the checkpoint
    summary = train(resumed, blocks, cfg, checkpoint)
    assert summary.resumed_from_step == 3 and summary.steps == 8
    corpus_batch, warmup_batch = cfg.batch_size * cfg.seq_len, cfg.copy_warmup_rows * cfg.copy_warmup_seq_len
    assert summary.tokens_seen == 6 * corpus_batch + 2 * warmup_batch  # counted across both attempts
    for (name, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters()):
        assert torch.equal(a, b), name


def test_a_checkpoint_of_another_recipe_is_not_resumed(tmp_path):
    cfg = tiny_config(tmp_path / "model", max_steps=3, checkpoint_every=1)
    texts = training_texts(cfg)
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    blocks = pack_blocks(texts, tokenizer, cfg.seq_len)
    train(LlamaForCausalLM(to_llama_config(cfg.spec, tokenizer)), blocks, cfg, checkpoint_path(cfg))
    assert load_checkpoint(checkpoint_path(cfg), cfg)["step"] == 3
    other = tiny_config(tmp_path / "model", max_steps=3, checkpoint_every=1, lr=1e-3)
    assert load_checkpoint(checkpoint_path(other), other) is None and not checkpoint_path(cfg).exists()
    torn = checkpoint_path(cfg)
    torn.write_bytes(b"not a checkpoint")
    assert load_checkpoint(torn, cfg) is None and not torn.exists()
    with pytest.raises(ValueError, match="checkpoint_every"):
        tiny_config(tmp_path / "model", checkpoint_every=-1)
