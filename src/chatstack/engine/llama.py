"""A Llama-family decoder (RoPE, SwiGLU, RMSNorm, GQA) that reads and writes a paged KV cache.

Weights come from a local Hugging Face checkpoint folder (safetensors). q/k/v and
gate/up projections are fused into one matmul each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from chatstack.engine.attention import AttentionMetadata, attend, paged_attention
from chatstack.engine.layer_ops import LayerOpsKernel
from chatstack.engine.quant import dense


@dataclass(frozen=True)
class LlamaSpec:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    eos_token_ids: tuple[int, ...]

    @classmethod
    def from_hf(cls, hf) -> "LlamaSpec":
        eos = hf.eos_token_id
        eos_ids = () if eos is None else tuple(eos) if isinstance(eos, (list, tuple)) else (eos,)
        return cls(
            vocab_size=hf.vocab_size, hidden_size=hf.hidden_size, intermediate_size=hf.intermediate_size,
            num_layers=hf.num_hidden_layers, num_heads=hf.num_attention_heads,
            num_kv_heads=hf.num_key_value_heads or hf.num_attention_heads,
            head_dim=getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads,
            rms_norm_eps=hf.rms_norm_eps, max_position_embeddings=hf.max_position_embeddings,
            tie_word_embeddings=bool(hf.tie_word_embeddings), eos_token_ids=eos_ids,
        )


def rope_tables(hf, spec: LlamaSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin: (max_position_embeddings, head_dim), including the config's RoPE scaling."""
    params = getattr(hf, "rope_parameters", None) or {"rope_type": "default", "rope_theta": 10000.0}
    rope_type = params.get("rope_type", "default")
    if rope_type == "dynamic":
        raise ValueError("rope_parameters.rope_type 'dynamic' is not supported by the native engine")
    if rope_type == "default":
        dim = spec.head_dim
        inv_freq = 1.0 / (params["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
        scaling = 1.0
    else:
        inv_freq, scaling = ROPE_INIT_FUNCTIONS[rope_type](hf, torch.device("cpu"))
    freqs = torch.arange(spec.max_position_embeddings, dtype=torch.float)[:, None] * inv_freq[None, :]
    angles = torch.cat((freqs, freqs), dim=-1)  # (P, head_dim)
    return angles.cos() * scaling, angles.sin() * scaling


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (T, heads, head_dim); cos, sin: (T, 1, head_dim)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class RMSNorm(nn.Module):
    def __init__(self, weight: torch.Tensor, eps: float):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One fused op (float32 statistics) instead of five: per-op overhead dominates small models.
        return nn.functional.rms_norm(x, self.weight.shape, self.weight, self.eps)


class DecoderLayer(nn.Module):
    def __init__(self, spec: LlamaSpec, weights: dict[str, torch.Tensor], prefix: str, quantization: str | None,
                 prepack: bool = True, keep_plain: bool = False, prepack_float32: bool = False):
        super().__init__()
        self.spec = spec
        w = lambda name: weights[prefix + name]  # noqa: E731
        b = lambda name: weights.get(prefix + name)  # noqa: E731
        project = lambda weight, bias: dense(weight, bias, quantization, prepack, keep_plain,  # noqa: E731
                                             prepack_float32)
        qkv_bias = None if b("self_attn.q_proj.bias") is None else torch.cat(
            [b("self_attn.q_proj.bias"), b("self_attn.k_proj.bias"), b("self_attn.v_proj.bias")])
        self.qkv = project(torch.cat([w("self_attn.q_proj.weight"), w("self_attn.k_proj.weight"),
                                      w("self_attn.v_proj.weight")]), qkv_bias)
        self.o_proj = project(w("self_attn.o_proj.weight"), b("self_attn.o_proj.bias"))
        self.gate_up = project(torch.cat([w("mlp.gate_proj.weight"), w("mlp.up_proj.weight")]), None)
        self.down = project(w("mlp.down_proj.weight"), None)
        self.input_norm = RMSNorm(w("input_layernorm.weight"), spec.rms_norm_eps)
        self.post_attention_norm = RMSNorm(w("post_attention_layernorm.weight"), spec.rms_norm_eps)

    def forward(self, x, cos, sin, kv: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        """x: (T, hidden); kv: (2, num_blocks, block_size, n_kv_heads, head_dim)."""
        q, k, v = self.project_qkv(x, cos, sin)
        return self.attention_out_and_mlp(x, paged_attention(q, k, v, kv[0], kv[1], meta))

    # The two tensor-only halves around attention: what `EngineConfig(compile=True)` compiles
    # (attention, with its per-step layout, stays eager).
    def project_qkv(self, x, cos, sin) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> q (T, n_heads, head_dim), k and v (T, n_kv_heads, head_dim), RoPE applied to q and k."""
        s = self.spec
        q_size, kv_size = s.num_heads * s.head_dim, s.num_kv_heads * s.head_dim
        qk, v = self.qkv(self.input_norm(x)).split([q_size + kv_size, kv_size], dim=-1)
        qk = rotate(qk.view(-1, s.num_heads + s.num_kv_heads, s.head_dim), cos, sin)  # q and k heads in one go
        q, k = qk.split([s.num_heads, s.num_kv_heads], dim=1)
        return q, k, v.view(-1, s.num_kv_heads, s.head_dim)

    def attention_out_and_mlp(self, x, attended) -> torch.Tensor:
        """x: (T, hidden) residual; attended: (T, n_heads * head_dim) -> (T, hidden)."""
        x = x + self.o_proj(attended)
        gate, up = self.gate_up(self.post_attention_norm(x)).chunk(2, dim=-1)
        return x + self.down(nn.functional.silu(gate) * up)

    def forward_fused(self, x, delta, positions, cos, sin, kv: torch.Tensor, meta: AttentionMetadata,
                      ops: LayerOpsKernel) -> tuple[torch.Tensor, torch.Tensor]:
        """The same layer with its element-wise work in C. x: (T, hidden) residual stream still missing the previous
        layer's MLP output `delta` (None before the first layer), which is added in place; -> (x, this layer's MLP
        output). positions: (T,); cos, sin: the whole (P, head_dim) tables."""
        s = self.spec
        h = ops.add_rms_norm(x, delta, self.input_norm.weight, self.input_norm.eps)
        q = ops.rope_store(self.qkv(h), positions, cos, sin, s.num_heads, s.num_kv_heads, meta.slot_mapping,
                           kv[0], kv[1])
        h = ops.add_rms_norm(x, self.o_proj(attend(q, kv[0], kv[1], meta)), self.post_attention_norm.weight,
                             self.post_attention_norm.eps)
        return x, self.down(ops.silu_mul(self.gate_up(h)))


class LlamaForPagedDecoding(nn.Module):
    def __init__(self, hf_config, weights: dict[str, torch.Tensor], quantization: str | None = None,
                 prepack: bool = True, keep_plain: bool = False, prepack_float32: bool = False):
        super().__init__()
        self.spec = spec = LlamaSpec.from_hf(hf_config)
        self.embed = nn.Embedding.from_pretrained(weights["model.embed_tokens.weight"], freeze=True)
        self.layers = nn.ModuleList(DecoderLayer(spec, weights, f"model.layers.{i}.", quantization, prepack, keep_plain,
                                                 prepack_float32) for i in range(spec.num_layers))
        self.norm = RMSNorm(weights["model.norm.weight"], spec.rms_norm_eps)
        head = weights["model.embed_tokens.weight"] if spec.tie_word_embeddings else weights["lm_head.weight"]
        self.lm_head = dense(head, None, quantization, prepack, keep_plain, prepack_float32)
        cos, sin = rope_tables(hf_config, spec)
        self.register_buffer("cos", cos.to(head.dtype), persistent=False)
        self.register_buffer("sin", sin.to(head.dtype), persistent=False)
        self.layer_ops: LayerOpsKernel | None = None  # set by the model runner where the C layer ops apply

    def forward(self, input_ids, positions, kv_cache, meta: AttentionMetadata, logits_index) -> torch.Tensor:
        """input_ids, positions: (T,); kv_cache: (layers, 2, ...); logits_index: (S,) -> logits (S, vocab)."""
        x = self.embed(input_ids)  # (T, hidden)
        if self.layer_ops is not None:
            delta = None
            for layer, kv in zip(self.layers, kv_cache):
                x, delta = layer.forward_fused(x, delta, positions, self.cos, self.sin, kv, meta, self.layer_ops)
            last = self.layer_ops.add_rms_norm(x[logits_index], delta[logits_index], self.norm.weight, self.norm.eps)
            return self.lm_head(last).float()
        cos, sin = self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1)  # (T, 1, head_dim)
        for layer, kv in zip(self.layers, kv_cache):
            x = layer(x, cos, sin, kv, meta)
        return self.lm_head(self.norm(x[logits_index])).float()


def load_llama(model_dir: str | Path, dtype: torch.dtype, device: str | torch.device,
               quantization: str | None = None, prepack: bool = True, keep_plain: bool = False,
               prepack_float32: bool = False) -> LlamaForPagedDecoding:
    """`prepack`: bfloat16 / float16 CPU projections in oneDNN's blocked layout (quant.PackedDense), and float32 ones
    with `prepack_float32`; `keep_plain`: the prepacked projections (layers and LM head) also keep a plain transposed
    copy (for the one-call decode step)."""
    model_dir = Path(model_dir)
    hf_config = AutoConfig.from_pretrained(str(model_dir))
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ValueError(f"model_dir {str(model_dir)!r} holds no *.safetensors weights")
    weights: dict[str, torch.Tensor] = {}
    for file in files:
        weights.update({k: v.to(device=device, dtype=dtype) for k, v in load_file(str(file)).items()})
    return LlamaForPagedDecoding(hf_config, weights, quantization, prepack, keep_plain, prepack_float32).eval()
