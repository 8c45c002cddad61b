"""The one-call decode step: a scheduled step that holds a single decoding sequence runs every
layer in C (`kernels/decode_step.c`) instead of ~25 torch ops per layer.

Applies on the CPU in float32 with unquantized weights and the C kernels available; the
engine's batched path handles everything else. The final norm and the LM head stay in torch.
"""

from __future__ import annotations

import ctypes

import torch

from chatstack.engine.cpu_kernels import DecodeStepKernel, decode_step_kernel
from chatstack.engine.llama import LlamaForPagedDecoding
from chatstack.engine.quant import Dense


class SingleDecodePath:
    def __init__(self, model: LlamaForPagedDecoding, kv_cache: torch.Tensor, kernel: DecodeStepKernel):
        self.model, self.kernel = model, kernel
        pointers: list[int | None] = []
        for layer, kv in zip(model.layers, kv_cache):
            for tensor in (layer.input_norm.weight, layer.qkv.weight_t, layer.qkv.bias, layer.o_proj.weight_t,
                           layer.o_proj.bias, layer.post_attention_norm.weight, layer.gate_up.weight_t,
                           layer.down.weight_t, kv[0], kv[1]):
                pointers.append(None if tensor is None else tensor.data_ptr())
        # (layers * LAYER_POINTERS,) addresses; the tensors live as long as the model and the cache
        self.layers = (ctypes.c_void_p * len(pointers))(*pointers)

    @classmethod
    def create(cls, model: LlamaForPagedDecoding, kv_cache: torch.Tensor) -> "SingleDecodePath | None":
        """The path for this model and cache, or None where it does not apply."""
        dense = all(isinstance(m, Dense) for layer in model.layers
                    for m in (layer.qkv, layer.o_proj, layer.gate_up, layer.down))
        if not dense or kv_cache.dtype != torch.float32 or kv_cache.device.type != "cpu":
            return None
        kernel = decode_step_kernel()
        return None if kernel is None else cls(model, kv_cache, kernel)

    def logits(self, token: int, position: int, block_table: list[int], block_size: int) -> torch.Tensor:
        """The next-token logits (1, vocab) of one sequence; writes its K/V at `position` on every layer."""
        spec, model = self.model.spec, self.model
        x = model.embed.weight[token].clone()  # (hidden,) the residual stream, updated in place
        self.kernel(x, self.layers, spec.num_layers, model.cos[position], model.sin[position],
                    torch.tensor(block_table, dtype=torch.int32), position, spec.hidden_size, spec.num_heads,
                    spec.num_kv_heads, spec.head_dim, spec.intermediate_size, block_size, spec.rms_norm_eps)
        return model.lm_head(model.norm(x[None])).float()
