"""Engine settings: KV pool size, block size and per-step batching limits."""

from __future__ import annotations

from dataclasses import dataclass

from chatstack.backends.base import MAX_LOGPROBS


QUANTIZATIONS = (None, "int8", "int4")
# How decodes are attended: "kernel" = the C kernel reading KV blocks in place (CPU, float32 / bfloat16);
# "torch" = gathered keys + masked SDPA (any device); "auto" = the kernel where it applies.
ATTENTION_BACKENDS = ("auto", "kernel", "torch")
# How prompt chunks (more than one new token) are attended where decodes use the C kernel: "kernel" = every
# chunk token is one more query of that kernel, keys read in place; "sdpa" = gathered keys + SDPA per chunk.
# Without the C kernel chunks always take SDPA.
PREFILL_ATTENTION_MODES = ("kernel", "sdpa")
# A step that holds one decoding sequence and nothing else runs every layer in one C call
# (single_decode.py) over its own copy of the projections in column panels (their weight memory twice over):
# "auto" = wherever it applies (float32 or bfloat16 unquantized, or int8 with float32 activations; C kernels, no
# compile); "on" = the same, but refuse to start where it does not apply; "off" = never (saves the copy).
SINGLE_DECODE_MODES = ("auto", "on", "off")
# float32 CPU projections in oneDNN's prepacked layout instead of the plain matmul (MKL): "auto" = where a
# load-time probe times it >= 1.2x faster on this CPU (quant.float32_prepack_pays); "on" = always; "off" = never.
FLOAT32_PREPACK_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class EngineConfig:
    block_size: int = 16
    num_kv_blocks: int = 1024
    max_num_seqs: int = 64
    max_num_batched_tokens: int = 512
    enable_prefix_caching: bool = True
    quantization: str | None = None  # see QUANTIZATIONS (weight-only; engine/quant.py)
    compile: bool = False
    attention: str = "auto"  # see ATTENTION_BACKENDS
    prefill_attention: str = "kernel"  # see PREFILL_ATTENTION_MODES
    single_decode: str = "auto"  # see SINGLE_DECODE_MODES
    # where that path applies and torch runs one thread, a step of only decoding tokens, at most this many, runs in
    # one C call too (its panel matmuls beat oneDNN's up to ~192 rows there: docs/benchmarks.md); 1 keeps it to
    # lone decodes
    decode_rows_max_seqs: int = 128
    float32_prepack: str = "auto"  # see FLOAT32_PREPACK_MODES
    max_logprobs: int = MAX_LOGPROBS  # the most top alternatives a request may ask for
    # multi-step decoding: a lone plain-greedy sequence with nobody waiting takes up to this many tokens per step
    # (one C call), as many as fit in lone_decode_budget_ms, so the step loop's Python is paid once for all of them;
    # a request arriving meanwhile waits at most that budget for its admission. 1 turns it off.
    lone_decode_steps: int = 8
    lone_decode_budget_ms: float = 2.0
    # a CPU KV pool asks Linux for 2 MiB transparent huge pages (engine/huge_pages.py): fewer TLB misses when
    # decode attention hops between scattered blocks
    kv_cache_huge_pages: bool = True
    # a waiting sequence is admitted only while the pool also holds every running sequence's next
    # `admission_lookahead` tokens (each capped at its max_tokens) besides the newcomer's whole prompt and its own
    # lookahead: fewer preemptions, whose recompute costs a whole prompt's projections. 0 admits while blocks last
    # (preemption alone makes room); a value at or above every max_tokens never preempts a sequence that runs to
    # its max_tokens. A sequence is always admitted when nothing runs.
    admission_lookahead: int = 64

    def __post_init__(self) -> None:
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")
        if self.num_kv_blocks < 1:
            raise ValueError(f"num_kv_blocks must be >= 1, got {self.num_kv_blocks}")
        if self.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")
        if self.max_num_batched_tokens < 1:
            raise ValueError(f"max_num_batched_tokens must be >= 1, got {self.max_num_batched_tokens}")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {self.quantization!r}")
        if self.attention not in ATTENTION_BACKENDS:
            raise ValueError(f"attention must be one of {ATTENTION_BACKENDS}, got {self.attention!r}")
        if self.prefill_attention not in PREFILL_ATTENTION_MODES:
            raise ValueError(f"prefill_attention must be one of {PREFILL_ATTENTION_MODES}, "
                             f"got {self.prefill_attention!r}")
        if self.single_decode not in SINGLE_DECODE_MODES:
            raise ValueError(f"single_decode must be one of {SINGLE_DECODE_MODES}, got {self.single_decode!r}")
        if self.decode_rows_max_seqs < 1:
            raise ValueError(f"decode_rows_max_seqs must be >= 1, got {self.decode_rows_max_seqs}")
        if self.float32_prepack not in FLOAT32_PREPACK_MODES:
            raise ValueError(f"float32_prepack must be one of {FLOAT32_PREPACK_MODES}, got {self.float32_prepack!r}")
        if self.lone_decode_steps < 1:
            raise ValueError(f"lone_decode_steps must be >= 1, got {self.lone_decode_steps}")
        if not self.lone_decode_budget_ms > 0:
            raise ValueError(f"lone_decode_budget_ms must be > 0, got {self.lone_decode_budget_ms}")
        if self.admission_lookahead < 0:
            raise ValueError(f"admission_lookahead must be >= 0, got {self.admission_lookahead}")
        if not 0 <= self.max_logprobs <= MAX_LOGPROBS:
            raise ValueError(f"max_logprobs must be in [0, {MAX_LOGPROBS}], got {self.max_logprobs}")

    @property
    def kv_capacity_tokens(self) -> int:
        return self.block_size * self.num_kv_blocks
