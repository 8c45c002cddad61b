"""Does a model read its context? Probes on the held-out helpfulness pairs.

A held-out helpfulness pair can only be ranked by copying: the chosen reply is a sentence of a
passage shown in the prompt, the rejected one a sentence of a document that is not shown.

- `context_token_share`: share of each reply's tokens that occur in the prompt's passages (no
  model; how separable the pairs are for a model that copies at all);
- `copy_gain`: mean log-probability gain per chosen-reply token from showing its passage
  (with it vs with that passage removed); about 0 for a model that ignores its context.

    python -m chatstack.alignment.context_probe artifacts/demo-sft
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass

from chatstack.alignment.preference_data import ObjectiveWeights, preference_records
from chatstack.alignment.preference_eval import reply_logprob


@dataclass(frozen=True)
class ContextProbe:
    pairs: int
    chosen_token_share: float  # mean share of chosen-reply tokens found in the prompt's passages
    rejected_token_share: float
    chosen_share_higher: float  # share of pairs whose chosen reply has the higher token share
    copy_gain_per_token: float | None = None  # nats, mean over pairs; None without a model


def held_out_helpfulness_pairs(pairs: int = 60, seed: int = 1) -> list[dict]:
    """The helpfulness pairs of the DPO held-out set (`dpo.py`: seed + 1 of the recipe's seed 0)."""
    records = preference_records(pairs, seed, ObjectiveWeights(), held_out=True)
    return [r for r in records if r["objective"] == "helpfulness"]


def _reply(record: dict, side: str) -> str:
    return record[side][0]["content"]


def _token_share(tokenizer, reply: str, shown: set[int]) -> float:
    ids = tokenizer(reply, add_special_tokens=False).input_ids
    return sum(t in shown for t in ids) / max(len(ids), 1)


def without_answer_passage(record: dict) -> list[dict]:
    """The chosen conversation with the reference block that holds the chosen reply removed."""
    system, question = record["prompt"]
    head, *blocks = system["content"].split("<reference ")
    answer = " ".join(_reply(record, "chosen").rsplit(" [", 1)[0].split())[:30]
    kept = [b for b in blocks if answer not in " ".join(b.split())]
    return [{"role": "system", "content": head + "".join("<reference " + b for b in kept)}, question,
            *record["chosen"]]


def probe(tokenizer, records: list[dict], model=None) -> ContextProbe:
    if not records:
        raise ValueError("records must hold at least one helpfulness pair")
    chosen, rejected, gains = [], [], []
    for record in records:
        shown = set(tokenizer(record["prompt"][0]["content"], add_special_tokens=False).input_ids)
        chosen.append(_token_share(tokenizer, _reply(record, "chosen"), shown))
        rejected.append(_token_share(tokenizer, _reply(record, "rejected"), shown))
        if model is not None:
            tokens = len(tokenizer(_reply(record, "chosen"), add_special_tokens=False).input_ids) + 1  # + end of turn
            with_passage = reply_logprob(model, tokenizer, record["prompt"] + record["chosen"])
            gains.append((with_passage - reply_logprob(model, tokenizer, without_answer_passage(record))) / tokens)
    return ContextProbe(
        pairs=len(records), chosen_token_share=statistics.mean(chosen), rejected_token_share=statistics.mean(rejected),
        chosen_share_higher=sum(c > r for c, r in zip(chosen, rejected)) / len(records),
        copy_gain_per_token=statistics.mean(gains) if gains else None,
    )


def repeat_probe(model, tokenizer, spans: int = 40, length: int = 100, seed: int = 123) -> tuple[float, float]:
    """(first copy, second copy) mean loss in nats per token, over `spans` shuffled spans of
    `length` corpus tokens each written twice."""
    import random

    import torch

    from chatstack.model import corpus

    ids = tokenizer("\n\n".join(corpus.documents()), add_special_tokens=False).input_ids
    rng = random.Random(seed)
    first = second = 0.0
    with torch.inference_mode():
        for _ in range(spans):
            start = rng.randrange(len(ids) - length)
            span = ids[start:start + length]
            rng.shuffle(span)
            tokens = torch.tensor([span + span])
            log_probs = torch.log_softmax(model(input_ids=tokens).logits[0, :-1].float(), dim=-1)
            nll = -log_probs.gather(1, tokens[0, 1:, None])[:, 0]  # (2 * length - 1,) loss of tokens 1..
            first += nll[: length - 1].mean().item()
            second += nll[length:].mean().item()
    return first / spans, second / spans


def main(argv: list[str] | None = None) -> ContextProbe | tuple[float, float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--repeat", action="store_true", help="the repeat probe instead of the held-out pairs")
    args = parser.parse_args(argv)
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir).eval()
    if args.repeat:
        first, second = repeat_probe(model, tokenizer)
        print(f"repeat probe: first copy {first:.3f}, second copy {second:.3f} nats/token")
        return first, second
    result = probe(tokenizer, held_out_helpfulness_pairs(), model)
    print(result)
    return result


if __name__ == "__main__":
    main()
