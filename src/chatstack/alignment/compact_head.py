"""Per-token log-probs for TRL's preference trainers, scoring only the labelled positions on CPU.

TRL's trainers call `model(..., labels=labels, fused_lm_head=True)` and read per-token
`log_probs` (and, for their metrics, `entropy`, `mean_logits`, `is_top1`, `log_sum_sq_probs`).
Its fused head projects only the labelled positions where Triton runs; elsewhere it projects
every position, so in DPO the LM head and its backward run over the whole prompt (the shown
passages, most of each row) to score a completion of a few dozen tokens. `compact_heads` wraps
TRL's patch: on CPU the head runs on the labelled rows alone, gathered before the projection;
on any other device, or under a distributed wrapper, TRL's own head runs unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import types

import torch

IGNORE_INDEX = -100


def labelled_log_probs(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                       temperature: float = 1.0) -> dict[str, torch.Tensor]:
    """Per-token fields of next-token prediction at the positions whose label is kept, zero elsewhere:
    `log_probs` (differentiable), and without gradient `entropy`, `mean_logits`, `is_top1`,
    `log_sum_sq_probs`.  hidden (B, T, H) and labels (B, T) already shifted -> each (B, T)"""
    mask = labels != IGNORE_INDEX
    logits = (hidden[mask] @ weight.T) / temperature  # (N, V), N = labelled positions
    log_all = torch.log_softmax(logits.float(), dim=-1)
    targets = labels[mask]
    picked = log_all.gather(1, targets[:, None]).squeeze(1)
    fields = {"log_probs": picked}
    with torch.no_grad():
        probs = log_all.exp()
        fields |= {"entropy": -(probs * log_all).sum(-1), "mean_logits": logits.mean(-1),
                   "is_top1": logits.argmax(-1) == targets,
                   "log_sum_sq_probs": torch.logsumexp(2 * log_all, dim=-1)}
    # masked_scatter keeps an all-ignored batch connected to the graph (a differentiable zero)
    return {name: value.new_zeros(mask.shape).masked_scatter(mask, value) for name, value in fields.items()} | {
        "label_mask": mask}


LOGIT_SCALING = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")


def _plain_cpu_model(model) -> bool:
    """A causal LM on CPU, not under a wrapper, whose logits are `hidden @ head.T` (no bias, no scaling)."""
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel) or model.device.type != "cpu" or model.base_model is model:
        return False
    config = model.config.get_text_config()
    head = model.get_output_embeddings()
    return getattr(head, "bias", None) is None and all(getattr(config, name, None) is None for name in LOGIT_SCALING)


def add_compact_head(model, temperature: float = 1.0, cast_lm_head_to_fp32: bool = False,
                     outputs: tuple[str, ...] = ("log_probs",)) -> None:
    """TRL's `add_fused_lm_head(model, ...)`, then a forward that, for `fused_lm_head=True` calls on a
    plain CPU model, projects only the labelled positions (`labelled_log_probs`)."""
    from trl.trainer.utils import FusedCausalLMOutput, add_fused_lm_head

    add_fused_lm_head(model, temperature=temperature, cast_lm_head_to_fp32=cast_lm_head_to_fp32, outputs=outputs)
    trl_forward = model.forward

    @functools.wraps(type(model).forward)
    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None,
                **kwargs):
        if not fused_lm_head or shift_labels is not None or kwargs.get("output_router_logits") \
                or not _plain_cpu_model(self):
            return trl_forward(*args, fused_lm_head=fused_lm_head, labels=labels, shift_labels=shift_labels,
                               num_items_in_batch=num_items_in_batch, **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
        fields = labelled_log_probs(hidden, self.get_output_embeddings().weight, labels[:, 1:], temperature)
        mask = fields.pop("label_mask")
        count = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        kept = {name: (value if name in outputs or name == "log_probs" else None) for name, value in fields.items()}
        return FusedCausalLMOutput(loss=-fields["log_probs"].sum() / count, label_mask=mask, **kept)

    model.forward = types.MethodType(forward, model)


@contextlib.contextmanager
def compact_heads():
    """While open, the DPO trainer patches its models with `add_compact_head` instead of TRL's head."""
    from trl.trainer import dpo_trainer

    original = dpo_trainer.add_fused_lm_head
    dpo_trainer.add_fused_lm_head = add_compact_head
    try:
        yield
    finally:
        dpo_trainer.add_fused_lm_head = original
