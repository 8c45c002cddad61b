"""Shape of the demo model: a small Llama (RoPE, SwiGLU, RMSNorm, GQA).

`TinyLlamaSpec` holds only the knobs that matter at this scale;
`to_llama_config` turns it into a transformers `LlamaConfig` whose vocabulary
and special-token ids come from the trained tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import LlamaConfig, PreTrainedTokenizerBase


@dataclass(frozen=True)
class TinyLlamaSpec:
    """Model size. Defaults give ~4M parameters with a 4096-token vocabulary."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2  # grouped-query attention: 2 query heads share a KV head
    intermediate_size: int = 352  # SwiGLU width, ~2.75 x hidden
    max_position_embeddings: int = 1024
    rope_theta: float = 10_000.0
    tie_word_embeddings: bool = True

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads",
                     "intermediate_size", "max_position_embeddings"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"num_heads must divide hidden_size={self.hidden_size}, got {self.num_heads}"
            )
        if self.head_dim % 2:
            raise ValueError(
                f"hidden_size / num_heads must be even for RoPE, got head_dim={self.head_dim}"
            )
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_kv_heads must divide num_heads={self.num_heads}, got {self.num_kv_heads}"
            )
        if not self.rope_theta > 0:
            raise ValueError(f"rope_theta must be > 0, got {self.rope_theta}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def to_llama_config(spec: TinyLlamaSpec, tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
    """A `LlamaConfig` for `spec`; `eos_token_id` is the end-of-turn token."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        head_dim=spec.head_dim,
        hidden_act="silu",  # with the gate/up projections: SwiGLU
        max_position_embeddings=spec.max_position_embeddings,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": spec.rope_theta},
        tie_word_embeddings=spec.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
