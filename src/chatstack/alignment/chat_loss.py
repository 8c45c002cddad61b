"""Held-out loss on assistant tokens only — the number SFT should lower."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from chatstack.text.chat_template import Message


def assistant_token_loss(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                         conversations: list[list[Message]], max_length: int) -> float:
    """Mean cross-entropy over the assistant tokens of `conversations`."""
    total, count = 0.0, 0
    model.eval()
    for conversation in conversations:
        encoded = tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in conversation],
            tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
            truncation=True, max_length=max_length,
        )
        ids = torch.tensor([encoded["input_ids"]])  # (1, T)
        mask = torch.tensor(encoded["assistant_masks"], dtype=torch.bool)  # (T,)
        with torch.inference_mode():
            logits = model(input_ids=ids).logits[0, :-1]  # (T-1, vocab)
        targets = ids[0, 1:]
        keep = mask[1:]
        if keep.any():
            losses = torch.nn.functional.cross_entropy(logits[keep].float(), targets[keep], reduction="sum")
            total += float(losses)
            count += int(keep.sum())
    return total / max(count, 1)
