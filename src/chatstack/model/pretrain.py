"""Train the demo model from scratch on the bundled-Python corpus, on CPU.

`main(cfg)` builds the corpus, trains the tokenizer, packs the tokens into
fixed-length blocks, trains a `LlamaForCausalLM` until the time budget or
`max_steps` runs out, and saves a folder that `from_pretrained` loads offline.
The folder appears only when complete: everything is written to a temporary
sibling directory that is renamed at the end.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from chatstack.model import corpus
from chatstack.model.architecture import TinyLlamaSpec, to_llama_config
from chatstack.model.copy_blocks import WARMUP_SPAN, copy_warmup_batch, with_copy_blocks
from chatstack.model.fused_loss import causal_lm_loss
from chatstack.model.pretrain_checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from chatstack.model.tokenizer import MIN_VOCAB_SIZE, train_tokenizer
from chatstack.recipes import check_checkpoint_interval
from chatstack.text.chat_template import END_OF_TURN, EOS, render_chat

logger = logging.getLogger(__name__)

SUMMARY_FILE = "train_summary.json"


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that defines a pretraining run. Defaults are the fast base the tests use (900 steps,
    about 180 s here, no copy warm-up); `training/recipes/demo_pretrain.yaml` is what the demo pipeline trains.

    The step count ends the fast base's run and the time budget is only a cap for a much slower machine:
    a budget that ended it trained as many steps as the machine managed, so the tests' model, and the
    replies they check, changed from one machine (or one busy minute) to the next."""

    output_dir: Path
    vocab_size: int = 4096
    spec: TinyLlamaSpec = field(default_factory=TinyLlamaSpec)
    seq_len: int = 256
    batch_size: int = 8
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    weight_decay: float = 0.1
    warmup_steps: int = 30
    time_budget_s: float = 900.0
    max_steps: int = 900
    seed: int = 0
    chat_fraction: float = 0.3  # share of corpus characters that are rendered chats
    # share of each batch's rows that are copy blocks (`copy_block`): what grows the copying
    # (induction) heads a reader needs; docs/training.md, "A base that copies"
    copy_fraction: float = 0.0
    # the first `copy_warmup_steps` steps train on copy blocks alone, `copy_warmup_rows` rows of
    # `copy_warmup_seq_len` tokens (spans of 8-24 tokens): a short context makes the copying heads
    # form in hundreds of steps instead of thousands (docs/training.md, "Copy warm-up")
    copy_warmup_steps: int = 0
    copy_warmup_rows: int = 32
    copy_warmup_seq_len: int = 64
    # a constant rate for the warm-up steps (after `warmup_steps`); None follows the cosine. The
    # heads form at 1e-3 to 2e-3 and not at 3e-3 (docs/training.md, "Copy warm-up")
    copy_warmup_lr: float | None = None
    max_corpus_chars: int | None = None  # a prefix of the corpus, for quick runs
    log_every: int = 20
    # every this many steps the run's whole state goes to `<output_dir>.checkpoint.pt`, and a run
    # of the same recipe started again continues from there (0: no checkpoints)
    checkpoint_every: int = 200

    def __post_init__(self) -> None:
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        for name in ("batch_size", "max_steps", "log_every", "lr", "time_budget_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a number > 0, got {value!r}")
        if self.vocab_size < MIN_VOCAB_SIZE:
            raise ValueError(f"vocab_size must be >= {MIN_VOCAB_SIZE}, got {self.vocab_size}")
        if not 2 <= self.seq_len <= self.spec.max_position_embeddings:
            raise ValueError(
                f"seq_len must be in [2, spec.max_position_embeddings="
                f"{self.spec.max_position_embeddings}], got {self.seq_len}"
            )
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        for name in ("min_lr_ratio", "chat_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.copy_fraction < 1.0:
            raise ValueError(f"copy_fraction must be in [0, 1), got {self.copy_fraction}")
        if not 0 <= self.copy_warmup_steps < self.max_steps:
            raise ValueError(f"copy_warmup_steps must be in [0, max_steps={self.max_steps}), "
                             f"got {self.copy_warmup_steps}")
        if self.copy_warmup_lr is not None and not self.copy_warmup_lr > 0:
            raise ValueError(f"copy_warmup_lr must be None or > 0, got {self.copy_warmup_lr}")
        if self.copy_warmup_rows < 1:
            raise ValueError(f"copy_warmup_rows must be >= 1, got {self.copy_warmup_rows}")
        if not 2 * WARMUP_SPAN[1] <= self.copy_warmup_seq_len <= self.spec.max_position_embeddings:
            raise ValueError(f"copy_warmup_seq_len must be in [{2 * WARMUP_SPAN[1]}, spec.max_position_embeddings="
                             f"{self.spec.max_position_embeddings}], got {self.copy_warmup_seq_len}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        check_checkpoint_interval("checkpoint_every", self.checkpoint_every)
        if self.max_corpus_chars is not None and self.max_corpus_chars < 1:
            raise ValueError(f"max_corpus_chars must be None or >= 1, got {self.max_corpus_chars}")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PretrainConfig:
        """Build from a parsed YAML recipe; `spec` is a nested mapping."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown PretrainConfig fields {unknown}; allowed: {sorted(known)}")
        values = with_float_fields(cls, raw)
        if isinstance(values.get("spec"), dict):
            values["spec"] = TinyLlamaSpec(**with_float_fields(TinyLlamaSpec, values["spec"]))
        return cls(**values)


def with_float_fields(config_type: type, raw: dict[str, Any]) -> dict[str, Any]:
    """Convert `float` fields given as text: YAML reads `6e-3` (no dot) as a string."""
    values = dict(raw)
    for f in fields(config_type):
        if f.type in ("float", "float | None") and isinstance(values.get(f.name), str):
            try:
                values[f.name] = float(values[f.name])
            except ValueError:
                raise ValueError(f"{f.name} must be a number, got {values[f.name]!r}") from None
    return values


@dataclass(frozen=True)
class TrainSummary:
    """What `train_summary.json` records about a finished run."""

    steps: int
    tokens_seen: int
    final_loss: float  # mean over the last `log_every` steps
    wall_s: float
    tokens_per_s: float
    params: int
    corpus_tokens: int
    resumed_from_step: int = 0  # > 0: the run continued from its checkpoint at this step


def mix_texts(documents: list[str], chats: list[str], chat_fraction: float, seed: int) -> list[str]:
    """Shuffle documents and chats together so chats are ~`chat_fraction` of the characters."""
    doc_chars, chat_chars = sum(map(len, documents)), sum(map(len, chats))
    if chat_fraction >= 1.0:
        doc_budget, chat_budget = 0.0, float(chat_chars)
    elif chat_chars * (1 - chat_fraction) > doc_chars * chat_fraction:
        doc_budget, chat_budget = doc_chars, doc_chars * chat_fraction / (1 - chat_fraction)
    else:
        doc_budget, chat_budget = chat_chars * (1 - chat_fraction) / chat_fraction, chat_chars
    rng = random.Random(seed)
    picked = take_chars(rng.sample(documents, len(documents)), doc_budget)
    picked += take_chars(rng.sample(chats, len(chats)), chat_budget)
    rng.shuffle(picked)
    return picked


def take_chars(texts: list[str], budget: float) -> list[str]:
    taken, total = [], 0
    for text in texts:
        if total + len(text) > budget:
            break
        taken.append(text)
        total += len(text)
    return taken


def training_texts(cfg: PretrainConfig) -> list[str]:
    """Plain documents and rendered chats, each ending in `<|endoftext|>`."""
    conversations = corpus.chat_examples(cfg.max_corpus_chars)
    chats = [render_chat(messages, add_generation_prompt=False) for messages in conversations]
    mixed = mix_texts(corpus.documents(cfg.max_corpus_chars), chats, cfg.chat_fraction, cfg.seed)
    return [text + EOS for text in mixed]


def pack_blocks(texts: list[str], tokenizer: PreTrainedTokenizerBase, seq_len: int) -> torch.Tensor:
    """Concatenate all token ids and cut them into full blocks.  # (num_blocks, seq_len)"""
    ids = [i for encoded in tokenizer(texts, add_special_tokens=False)["input_ids"] for i in encoded]
    num_blocks = len(ids) // seq_len
    if num_blocks == 0:
        raise ValueError(f"corpus has {len(ids)} tokens, fewer than seq_len={seq_len}")
    return torch.tensor(ids[: num_blocks * seq_len], dtype=torch.long).view(num_blocks, seq_len)


def learning_rate(cfg: PretrainConfig, step: int, progress: float) -> float:
    """Linear warmup, then cosine to `lr * min_lr_ratio` as `progress` goes 0 -> 1; a set
    `copy_warmup_lr` replaces the cosine during the copy warm-up steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.copy_warmup_lr is not None and step < cfg.copy_warmup_steps:
        return cfg.copy_warmup_lr
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)


def make_optimizer(model: torch.nn.Module, cfg: PretrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not norms)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


def batches(blocks: torch.Tensor, batch_size: int, seed: int, skip: int = 0):
    """Endless random batches, one pass over the blocks per epoch, less the first `skip`.  # (B, T)"""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(blocks), generator=generator)
        starts = range(0, len(order) - batch_size + 1, batch_size) if len(order) >= batch_size else [0]
        if skip >= len(starts):  # a whole epoch already trained on: draw its order only
            skip -= len(starts)
            continue
        for start in starts[skip:]:
            yield blocks[order[start : start + batch_size]]
        skip = 0


def train(model: LlamaForCausalLM, blocks: torch.Tensor, cfg: PretrainConfig,
          checkpoint: Path | None = None) -> TrainSummary:
    """Train in place until `time_budget_s` or `max_steps`; returns the run summary.

    `checkpoint`: a file the run's state is saved to every `checkpoint_every` steps and, when it holds a
    checkpoint of the same recipe, continued from: the same batches, learning rates and floats as a run
    never stopped (the time budget counts the training time of every attempt)."""
    optimizer = make_optimizer(model, cfg)
    model.train()
    losses: list[float] = []
    tokens_seen, step, before = 0, 0, 0.0
    flat, copy_rng = blocks.flatten(), random.Random(cfg.seed)
    state = load_checkpoint(checkpoint, cfg) if checkpoint is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        copy_rng.setstate(state["copy_rng"])
        step, tokens_seen, losses, before = state["step"], state["tokens_seen"], state["losses"], state["elapsed"]
        logger.info("resuming from %s at step %d", checkpoint, step)
    resumed_from, start = step, time.perf_counter() - before
    for batch in batches(blocks, cfg.batch_size, cfg.seed, skip=step):
        if step < cfg.copy_warmup_steps:
            batch = copy_warmup_batch(flat, cfg, copy_rng)
        else:
            batch = with_copy_blocks(batch, flat, cfg.copy_fraction, copy_rng)
        elapsed = time.perf_counter() - start
        if step >= cfg.max_steps or elapsed >= cfg.time_budget_s:
            break
        progress = max(step / cfg.max_steps, elapsed / cfg.time_budget_s)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(cfg, step, progress)
        loss = causal_lm_loss(model, batch)  # the model's own loss, without holding the full logits
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        tokens_seen += batch.numel()
        step += 1
        if step % cfg.log_every == 0:
            recent = sum(losses[-cfg.log_every :]) / len(losses[-cfg.log_every :])
            logger.info("step %d loss %.3f lr %.2e tok/s %.0f", step, recent,
                        optimizer.param_groups[0]["lr"], tokens_seen / (time.perf_counter() - start))
        if checkpoint is not None and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
            # the state after this step, as the next one starts from it: its batch comes after `step` batches
            save_checkpoint(checkpoint, cfg, model, optimizer, {
                "step": step, "tokens_seen": tokens_seen, "losses": losses[-cfg.log_every:],
                "elapsed": time.perf_counter() - start, "copy_rng": copy_rng.getstate()})
    wall_s = time.perf_counter() - start
    recent = losses[-cfg.log_every :] or [float("nan")]
    return TrainSummary(
        steps=step,
        tokens_seen=tokens_seen,
        final_loss=sum(recent) / len(recent),
        wall_s=round(wall_s, 2),
        tokens_per_s=round(tokens_seen / wall_s, 1),
        params=sum(p.numel() for p in model.parameters()),
        corpus_tokens=blocks.numel(),
        resumed_from_step=resumed_from,
    )


def generation_config(tokenizer: PreTrainedTokenizerBase) -> GenerationConfig:
    """Generation stops at end of turn or end of text."""
    return GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.convert_tokens_to_ids(END_OF_TURN), tokenizer.convert_tokens_to_ids(EOS)],
        pad_token_id=tokenizer.pad_token_id,
    )


def make_world_readable(folder: Path) -> None:
    """`mkdtemp` and safetensors create owner-only modes; serving may run as another user."""
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)


def save_atomically(output_dir: Path, model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase,
                    summary: TrainSummary, cfg: PretrainConfig | None = None) -> Path:
    """Write everything to a temporary sibling, then swap it into `output_dir`; the summary
    file also records the run's `cfg`, when given, under "recipe"."""
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        model.generation_config = generation_config(tokenizer)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        record = asdict(summary) | ({"recipe": asdict(cfg)} if cfg is not None else {})
        (staging / SUMMARY_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n")
        make_world_readable(staging)
        if output_dir.exists():
            shutil.rmtree(output_dir)
        staging.rename(output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir


def main(cfg: PretrainConfig) -> Path:
    """Corpus -> tokenizer -> packed blocks -> trained model saved in `cfg.output_dir`."""
    texts = training_texts(cfg)
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    blocks = pack_blocks(texts, tokenizer, cfg.seq_len)  # (num_blocks, seq_len)
    tokenizer.model_max_length = cfg.spec.max_position_embeddings
    logger.info("corpus: %d texts, %d blocks of %d tokens", len(texts), len(blocks), cfg.seq_len)
    torch.manual_seed(cfg.seed)
    model = LlamaForCausalLM(to_llama_config(cfg.spec, tokenizer))
    checkpoint = checkpoint_path(cfg) if cfg.checkpoint_every else None
    summary = train(model, blocks, cfg, checkpoint)
    logger.info("trained: %s", summary)
    saved = save_atomically(cfg.output_dir, model, tokenizer, summary, cfg)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    return saved


def is_saved_model(output_dir: Path) -> bool:
    return (output_dir / "config.json").is_file() and (output_dir / "tokenizer.json").is_file()


def ensure_demo_model(output_dir: Path, time_budget_s: float | None = None, recipe: Path | None = None) -> Path:
    """The demo model folder, trained only if not there yet: with `recipe` (a YAML of
    PretrainConfig fields), else with the PretrainConfig defaults (the fast base the tests
    use); `time_budget_s`, when given, replaces the recipe's or the default budget."""
    output_dir = Path(output_dir)
    if is_saved_model(output_dir):
        return output_dir
    raw: dict[str, Any] = {"output_dir": output_dir}
    if recipe is not None:
        from chatstack.recipes import load_recipe

        raw = load_recipe(recipe) | raw
    if time_budget_s is not None:
        raw["time_budget_s"] = time_budget_s
    return main(PretrainConfig.from_dict(raw))
