"""The LM-head losses that skip the full logits give the plain path's loss and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from chatstack.alignment.compact_head import add_compact_head, labelled_log_probs
from chatstack.alignment.sft import backbone_and_head
from chatstack.alignment.sft import causal_lm_loss as full_logits_loss
from chatstack.model.fused_loss import causal_lm_loss, linear_cross_entropy, shifted_targets


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=128,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config).train()


def grads(model) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return out


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 1000])
def test_linear_cross_entropy_matches_the_plain_loss_and_gradients(chunk_rows):
    torch.manual_seed(1)
    hidden = torch.randn(50, 16, requires_grad=True)
    weight = torch.randn(41, 16, requires_grad=True)
    targets = torch.randint(0, 41, (50,))
    targets[::3] = -100
    logits = hidden @ weight.T
    expected = F.cross_entropy(logits, targets, ignore_index=-100, reduction="sum")
    expected.backward()
    expected_grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    total, correct = linear_cross_entropy(hidden, weight, targets, chunk_rows)
    (2.5 * total).backward()  # the upstream gradient scales the precomputed ones
    torch.testing.assert_close(total, expected)
    torch.testing.assert_close(hidden.grad, 2.5 * expected_grads[0])
    torch.testing.assert_close(weight.grad, 2.5 * expected_grads[1])
    kept = targets != -100
    assert int(correct) == int(((logits.argmax(1) == targets) & kept).sum())


def test_linear_cross_entropy_without_gradients_and_with_bad_shapes():
    hidden, weight = torch.randn(4, 8), torch.randn(10, 8)
    total, _ = linear_cross_entropy(hidden, weight, torch.tensor([1, 2, -100, 3]))
    assert total.requires_grad is False and total > 0
    with pytest.raises(ValueError, match="share H"):
        linear_cross_entropy(hidden, torch.randn(10, 9), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="targets must have shape"):
        linear_cross_entropy(hidden, weight, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="chunk_rows"):
        linear_cross_entropy(hidden, weight, torch.zeros(4, dtype=torch.long), chunk_rows=0)


def test_causal_lm_loss_is_the_models_own_loss():
    model = tiny_llama()
    ids = torch.randint(0, 97, (3, 40))
    model(input_ids=ids, labels=ids).loss.backward()
    expected_loss, expected = model(input_ids=ids, labels=ids).loss.item(), grads(model)
    loss = causal_lm_loss(model, ids)
    loss.backward()
    assert loss.item() == pytest.approx(expected_loss, rel=1e-6)
    assert_close(grads(model), expected)


def test_sft_loss_on_assistant_tokens_matches_the_full_logits_loss():
    """What the SFT trainer computes on CPU: the head on labelled positions only, padded rows included."""
    model = tiny_llama()
    ids = torch.randint(0, 97, (2, 30))
    mask = torch.ones_like(ids)
    mask[1, 22:] = 0  # right padding of the shorter conversation
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :12] = -100  # the prompt: system passages and question
    full_logits_loss(model(input_ids=ids, attention_mask=mask), labels).backward()
    expected = grads(model)
    backbone, head = backbone_and_head(model)
    rows, targets = shifted_targets(backbone(input_ids=ids, attention_mask=mask).last_hidden_state, labels)
    assert len(targets) == int((labels[:, 1:] != -100).sum())
    total, _ = linear_cross_entropy(rows, head.weight, targets)
    (total / len(targets)).backward()
    assert_close(grads(model), expected)


def test_backbone_and_head_sees_through_peft_and_not_through_other_wrappers():
    from peft import LoraConfig, get_peft_model

    model = tiny_llama()
    assert backbone_and_head(model)[0] is model.model
    lora = get_peft_model(tiny_llama(), LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    backbone, head = backbone_and_head(lora)
    assert backbone is lora.get_base_model().model and head is lora.get_base_model().lm_head
    assert backbone_and_head(torch.nn.Sequential(model)) is None


def test_labelled_log_probs_match_the_full_log_softmax():
    torch.manual_seed(2)
    hidden = torch.randn(2, 9, 16, requires_grad=True)
    weight = torch.randn(33, 16)
    labels = torch.randint(0, 33, (2, 9))
    labels[0, :5] = -100
    fields = labelled_log_probs(hidden, weight, labels, temperature=0.7)
    log_all = torch.log_softmax(hidden @ weight.T / 0.7, dim=-1)
    mask = labels != -100
    expected = log_all.gather(2, labels.clamp(min=0)[..., None]).squeeze(-1) * mask
    torch.testing.assert_close(fields["log_probs"], expected)
    torch.testing.assert_close(fields["entropy"], -(log_all.exp() * log_all).sum(-1) * mask)
    assert torch.equal(fields["label_mask"], mask)
    fields["log_probs"].sum().backward()
    assert hidden.grad[0, :5].abs().max() == 0 and hidden.grad[0, 5:].abs().max() > 0


def test_compact_head_gives_trls_log_probs_and_gradients():
    """The DPO trainer's `model(..., labels=..., fused_lm_head=True)` call: TRL's head and the compact one agree."""
    from trl.trainer.utils import add_fused_lm_head

    outputs = ("log_probs", "entropy", "mean_logits", "is_top1")
    ids = torch.randint(0, 97, (4, 24))
    labels = ids.masked_fill(torch.arange(24) < 15, -100)  # completion after a 15-token prompt
    results = []
    for patch in (add_fused_lm_head, add_compact_head):
        model = tiny_llama()
        patch(model, outputs=outputs)
        out = model(input_ids=ids, labels=labels, fused_lm_head=True)
        out.log_probs.sum().backward()
        results.append((out, grads(model)))
    (trl_out, trl_grads), (ours, our_grads) = results
    for name in outputs + ("loss",):
        torch.testing.assert_close(getattr(ours, name), getattr(trl_out, name), rtol=1e-4, atol=1e-5, msg=name)
    assert ours.log_sum_sq_probs is None
    assert_close(our_grads, trl_grads)
    plain = tiny_llama()
    add_compact_head(plain)
    assert plain(input_ids=ids).logits.shape == (4, 24, 97)  # generation's forward is untouched
