"""The fused C layer ops equal the torch ops they replace, and the engine's fused forward equals its torch one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from chatstack.engine.layer_ops import layer_ops_kernel
from chatstack.engine.attention import write_kv
from chatstack.engine.config import EngineConfig
from chatstack.engine.llama import rotate
from chatstack.engine.model_runner import ModelRunner
from chatstack.engine.scheduler import Scheduler
from chatstack.engine.sequence import Sequence
from chatstack.backends.base import SamplingParams

from tests.unit.engine.helpers import needs_c_compiler

ops = layer_ops_kernel()
pytestmark = needs_c_compiler
DTYPES = [torch.float32, torch.bfloat16]


def close(got: torch.Tensor, expected: torch.Tensor, atol: float = 1e-6) -> None:
    """float32: a few ulps (the sums run in another order); bfloat16: one rounding step at most."""
    if got.dtype == torch.bfloat16:
        torch.testing.assert_close(got.float(), expected.float(), rtol=8e-3, atol=max(atol, 1e-5))
    else:
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 7, 130])  # 130: split over threads where torch has more than one
def test_add_rms_norm_equals_the_residual_add_then_rms_norm(dtype, rows):
    torch.manual_seed(0)
    x, delta = torch.randn(rows, 96).to(dtype), torch.randn(rows, 96).to(dtype)
    weight = torch.randn(96).to(dtype)
    summed = x + delta
    expected = nn.functional.rms_norm(summed, weight.shape, weight, 1e-5)
    got = ops.add_rms_norm(x, delta, weight, 1e-5)
    assert torch.equal(x, summed)  # the residual stream is updated in place, rounded as torch rounds it
    close(got, expected)
    close(ops.add_rms_norm(x, None, weight, 1e-5), expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_silu_mul_equals_silu_of_gate_times_up(dtype):
    torch.manual_seed(1)
    gate_up = (torch.randn(70, 2 * 80) * 6).to(dtype)
    gate_up[0, :4] = torch.tensor([-100.0, 100.0, 0.0, -0.0])  # far tails and zero
    gate, up = gate_up.chunk(2, dim=-1)
    close(ops.silu_mul(gate_up), nn.functional.silu(gate) * up)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rope_store_rotates_q_and_k_and_writes_k_and_v_at_their_slots(dtype):
    torch.manual_seed(2)
    n_heads, n_kv_heads, head_dim, rows = 4, 2, 32, 9
    qkv = torch.randn(rows, (n_heads + 2 * n_kv_heads) * head_dim).to(dtype)
    cos, sin = torch.randn(50, head_dim).to(dtype), torch.randn(50, head_dim).to(dtype)
    positions = torch.tensor([0, 1, 2, 17, 30, 31, 49, 5, 6])
    slots = torch.tensor([3, 40, 41, 7, 0, 63, 12, 13, 22])
    cache = torch.randn(2, 4, 16, n_kv_heads, head_dim).to(dtype)
    expected_cache = cache.clone()
    qk, v = qkv.split([(n_heads + n_kv_heads) * head_dim, n_kv_heads * head_dim], dim=-1)
    qk = rotate(qk.reshape(rows, n_heads + n_kv_heads, head_dim), cos[positions][:, None], sin[positions][:, None])
    q, k = qk.split([n_heads, n_kv_heads], dim=1)
    write_kv(expected_cache[0], slots, k)
    write_kv(expected_cache[1], slots, v.reshape(rows, n_kv_heads, head_dim))
    got = ops.rope_store(qkv, positions, cos, sin, n_heads, n_kv_heads, slots, cache[0], cache[1])
    assert torch.equal(got, q) and torch.equal(cache, expected_cache)  # same roundings, same order: bit for bit


def test_layer_ops_reject_what_they_cannot_read():
    x = torch.zeros(2, 8)
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        ops.add_rms_norm(x.double(), None, torch.zeros(8).double(), 1e-6)
    with pytest.raises(ValueError, match="weight must be a contiguous CPU torch.float32"):
        ops.add_rms_norm(x, None, torch.zeros(16)[::2], 1e-6)
    with pytest.raises(ValueError, match="delta like x"):
        ops.add_rms_norm(x, torch.zeros(3, 8), torch.zeros(8), 1e-6)
    with pytest.raises(ValueError, match="gate_up must be"):
        ops.silu_mul(torch.zeros(2, 7))
    cache = torch.zeros(2, 4, 1, 8)
    with pytest.raises(ValueError, match="rope_store shapes disagree"):
        ops.rope_store(torch.zeros(2, 24), torch.zeros(2, dtype=torch.long), torch.zeros(9, 8), torch.zeros(9, 8),
                       2, 1, torch.zeros(3, dtype=torch.long), cache, cache)
    odd = torch.zeros(2, 3, 1, 7)  # RoPE rotates halves: an odd head_dim cannot be rotated
    with pytest.raises(ValueError, match="rope_store shapes disagree"):
        ops.rope_store(torch.zeros(2, 28), torch.zeros(2, dtype=torch.long), torch.zeros(9, 7), torch.zeros(9, 7),
                       2, 1, torch.zeros(2, dtype=torch.long), odd, odd)
    qkv, table = torch.zeros(2, 32), torch.zeros(9, 8)
    for positions, slots in (([0, 9], [0, 1]), ([0, -1], [0, 1]), ([0, 1], [0, 8]), ([0, 1], [-1, 1])):
        with pytest.raises(ValueError, match=r"positions must be in \[0, 9\) and slots in \[0, 8\)"):
            ops.rope_store(qkv, torch.tensor(positions), table, table, 2, 1, torch.tensor(slots), cache, cache)
    with pytest.raises(ValueError, match="positions must be a contiguous CPU torch.int64"):
        ops.rope_store(torch.zeros(2, 32), torch.zeros(2, dtype=torch.int32), torch.zeros(9, 8), torch.zeros(9, 8),
                       2, 1, torch.zeros(2, dtype=torch.long), cache, cache)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_forward_equals_the_torch_forward_over_a_mixed_step(tiny_llama, dtype):
    """One step holding a fresh prompt, a continued prompt piece and decodes: same logits and cache."""
    config = EngineConfig(num_kv_blocks=64, block_size=4, max_num_batched_tokens=64)
    runners = [ModelRunner(tiny_llama, config, dtype=dtype) for _ in range(2)]
    assert runners[0].model.layer_ops is not None  # the fused path, against the torch path beside it
    runners[1].model.layer_ops = None
    logits, caches = [], []
    for runner in runners:
        scheduler = Scheduler(config)
        seqs = [Sequence(f"s{i}", list(range(3 + i, 3 + i + n)), SamplingParams(max_tokens=4, temperature=0.0))
                for i, n in enumerate((9, 30, 5))]
        for seq in seqs:
            scheduler.add(seq)
        step_logits = []
        for _ in range(4):  # prefills (one split over two steps by the budget), then decodes beside them
            output = scheduler.schedule()
            step_logits.append(runner._batched_logits(output))
            scheduler.complete(output, {c.seq.seq_id: 7 for c in output.chunks if c.samples})
        logits.append(torch.cat(step_logits))
        caches.append(runner.kv_cache)
    close(logits[0], logits[1], atol=1e-5)  # logits of order 1 after every layer: absolute ulps of that size
    close(caches[0], caches[1], atol=1e-5)
