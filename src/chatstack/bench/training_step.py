"""Training-step benchmark: the demo pipeline's LM-head losses against the plain ones, side by side.

    HF_HUB_OFFLINE=1 PYTHONPATH=src .venv/bin/python -m chatstack.bench.training_step \
        --model artifacts/demo-sft

For each stage of `chatstack train-demo` one optimizer step of the demo model on a batch of
the recipe's shape, timed alternately (plain, ours, plain, ...) so machine noise falls on both:
- pretrain: the corpus batch (8 × 256) and the copy warm-up batch (32 × 64), the model's own
  loss (full logits) against `fused_loss.causal_lm_loss`;
- sft: 8 reader conversations of the demo SFT mix, loss on assistant tokens, full logits
  against the head on the assistant positions only (`fused_loss`);
- dpo: 8 pairs (16 rows, the reply after the passages labelled), TRL's fused head (which on
  CPU projects every position) against `compact_head`.
Prints the median step time of each and the ratio plain / ours.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from chatstack import project


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=project.ROOT / "artifacts" / "demo-sft",
                        help="a demo model folder (its tokenizer renders the SFT conversations)")
    parser.add_argument("--rounds", type=int, default=8, help="timed steps of each path (after 2 warm-up steps)")
    parser.add_argument("--stages", nargs="+", choices=("pretrain", "sft", "dpo"), default=["pretrain", "sft", "dpo"])
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if not (args.model / "config.json").is_file():
        parser.error(f"--model {args.model} holds no model; run `chatstack train-demo` first")
    return args


def fresh(model_dir: Path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).train()
    return model, torch.optim.AdamW(model.parameters(), lr=1e-5)


def conversation_batch(tokenizer, count: int):
    """`count` conversations of the demo SFT mix, right-padded: ids, attention mask, assistant labels."""
    from chatstack.alignment.reader_data import reader_conversations
    from chatstack.alignment.sft import SFTRecipe
    from chatstack.recipes import load_recipe

    recipe = SFTRecipe.from_dict(load_recipe(project.ROOT / "training" / "recipes" / "demo_sft.yaml"))
    rows = [tokenizer.apply_chat_template([{"role": m.role, "content": m.content} for m in c], tokenize=True,
                                          return_dict=True, return_assistant_tokens_mask=True, truncation=True,
                                          max_length=recipe.max_length)
            for c in reader_conversations(count, 3, recipe.mix)]
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((count, width), tokenizer.pad_token_id)
    mask, labels = torch.zeros_like(ids), torch.full_like(ids, -100)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n], mask[i, :n] = torch.tensor(r["input_ids"]), 1
        labels[i, :n] = torch.tensor(r["input_ids"]).masked_fill(~torch.tensor(r["assistant_masks"], dtype=torch.bool), -100)
    return ids, mask, labels


def pretrain_losses(model_dir: Path, batch: torch.Tensor):
    from chatstack.model.fused_loss import causal_lm_loss

    plain, ours = fresh(model_dir), fresh(model_dir)
    return {"plain": (plain, lambda m: m(input_ids=batch, labels=batch).loss),
            "ours": (ours, lambda m: causal_lm_loss(m, batch))}


def sft_losses(model_dir: Path, ids, mask, labels):
    from chatstack.alignment.sft import backbone_and_head, causal_lm_loss
    from chatstack.model.fused_loss import linear_cross_entropy, shifted_targets

    def compact(model):
        backbone, head = backbone_and_head(model)
        rows, targets = shifted_targets(backbone(input_ids=ids, attention_mask=mask).last_hidden_state, labels)
        total, _ = linear_cross_entropy(rows, head.weight, targets)
        return total / len(targets)

    return {"plain": (fresh(model_dir), lambda m: causal_lm_loss(m(input_ids=ids, attention_mask=mask), labels)),
            "ours": (fresh(model_dir), compact)}


def dpo_losses(model_dir: Path, ids, mask, labels):
    from trl.trainer.utils import add_fused_lm_head

    from chatstack.alignment.compact_head import add_compact_head

    outputs = ("log_probs", "entropy", "mean_logits", "is_top1")  # what TRL's DPO trainer asks for
    reference = torch.zeros(len(ids))

    def dpo_loss(model):
        logps = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True).log_probs.sum(1)
        chosen, rejected = (logps - reference).chunk(2)
        return -F.logsigmoid(0.1 * (chosen - rejected)).mean()

    paths = {}
    for name, patch in (("plain", add_fused_lm_head), ("ours", add_compact_head)):
        model, optimizer = fresh(model_dir)
        patch(model, outputs=outputs)
        paths[name] = ((model, optimizer), dpo_loss)
    return paths


def time_steps(paths: dict, rounds: int) -> dict[str, float]:
    """Median seconds of one optimizer step of each path, the paths taking turns."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    for i in range(rounds + 2):
        for name, ((model, optimizer), loss_of) in paths.items():
            started = time.perf_counter()
            loss = loss_of(model)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if i >= 2:
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> str:
    from transformers import AutoTokenizer

    args = parse_args(argv)
    tokenizer = AutoTokenizer.from_pretrained(str(args.model))
    vocab = len(tokenizer)
    cases = []
    if "pretrain" in args.stages:
        generator = torch.Generator().manual_seed(0)
        for rows, width, label in ((8, 256, "pretrain corpus batch 8 x 256"), (32, 64, "pretrain warm-up batch 32 x 64")):
            batch = torch.randint(0, vocab, (rows, width), generator=generator)
            cases.append((label, pretrain_losses(args.model, batch), rows * (width - 1)))
    if "sft" in args.stages or "dpo" in args.stages:
        ids, mask, labels = conversation_batch(tokenizer, 16)
    if "sft" in args.stages:
        cases.append((f"sft batch 8 x {int(mask[:8].sum(1).max())}", sft_losses(args.model, ids[:8], mask[:8], labels[:8]),
                      int((labels[:8, 1:] != -100).sum())))
    if "dpo" in args.stages:
        cases.append((f"dpo batch 16 x {int(mask.sum(1).max())}", dpo_losses(args.model, ids, mask, labels),
                      int((labels[:, 1:] != -100).sum())))
    lines = [f"model {args.model} (vocab {vocab}), {torch.get_num_threads()} threads, median of {args.rounds} steps",
             f"{'step':<34} {'labelled':>8} {'plain s':>8} {'ours s':>8} {'plain/ours':>10}"]
    for label, paths, labelled in cases:
        t = time_steps(paths, args.rounds)
        lines.append(f"{label:<34} {labelled:>8} {t['plain']:>8.3f} {t['ours']:>8.3f} {t['plain'] / t['ours']:>10.2f}")
        print(lines[-1], flush=True)
    return "\n".join(lines)


if __name__ == "__main__":
    print(main())
