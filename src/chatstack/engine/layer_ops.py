"""The element-wise work between a batched step's matmuls, fused in C (`kernels/layer_ops.c`).

Residual add + RMSNorm, SiLU-gate product, RoPE + K/V write for float32 and bfloat16 CPU
rows; `DecoderLayer.forward_fused` makes four calls per layer instead of ~20 torch ops.
Built and loaded like the other C kernels (`cpu_kernels.py`).
"""

from __future__ import annotations

import ctypes
import functools

import torch

from chatstack.engine.cpu_kernels import cache_layout, load, require_contiguous_cpu, row_parts, run_parts


class LayerOpsKernel:
    """Typed wrappers around `kernels/layer_ops.c` for float32 and bfloat16 CPU rows; a call splits its rows over
    torch's thread count (at least 32 rows a thread). Called ~4 times per layer per step, so the checks are the
    cheap ones; a failing check raises with the full picture."""

    DTYPES = {torch.float32: "f32", torch.bfloat16: "bf16"}

    def __init__(self, library: ctypes.CDLL):
        p, i64 = ctypes.c_void_p, ctypes.c_int64
        self._norm, self._silu, self._rope = {}, {}, {}
        for dtype, suffix in self.DTYPES.items():
            self._norm[dtype] = self._bind(library, f"chatstack_add_rms_norm_{suffix}", [p, p, p, i64, i64, ctypes.c_float, p])
            self._silu[dtype] = self._bind(library, f"chatstack_silu_mul_{suffix}", [p, i64, i64, p])
            self._rope[dtype] = self._bind(library, f"chatstack_rope_store_{suffix}",
                                           [p, i64, p, p, p, i64, i64, i64, i64, p, i64, p, p, p, p], ctypes.c_int)

    @staticmethod
    def _bind(library: ctypes.CDLL, name: str, argtypes: list, restype=None):
        fn = getattr(library, name)
        fn.argtypes, fn.restype = argtypes, restype
        return fn

    def _check(self, dtype: torch.dtype, **named: torch.Tensor) -> None:
        if dtype in self.DTYPES and all(t.dtype == dtype and t.is_cpu and t.is_contiguous() for t in named.values()):
            return
        if dtype not in self.DTYPES:
            raise ValueError(f"layer ops take float32 or bfloat16 tensors, got {dtype}")
        require_contiguous_cpu(*((name, t, dtype) for name, t in named.items()))

    @staticmethod
    def _rows(run, rows: int) -> None:
        """run(first, end) over all rows: at once here, or split over the pool where torch has threads to spare."""
        threads = torch.get_num_threads()
        if threads == 1:
            run(0, rows)
        else:
            run_parts(run, row_parts(rows, threads))

    def add_rms_norm(self, x: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor, eps: float) -> torch.Tensor:
        """x: (rows, n) residual stream, `delta` added in place when given; -> RMSNorm(x) * weight, (rows, n)."""
        if delta is None:
            self._check(x.dtype, x=x, weight=weight)
        else:
            self._check(x.dtype, x=x, weight=weight, delta=delta)
        if x.dim() != 2 or weight.shape != x.shape[1:] or (delta is not None and delta.shape != x.shape):
            raise ValueError(f"add_rms_norm needs x (rows, n), weight (n,) and delta like x; got {tuple(x.shape)}, "
                             f"{tuple(weight.shape)}, {None if delta is None else tuple(delta.shape)}")
        out = torch.empty_like(x)
        rows, n = x.shape
        fn, size, xp, op = self._norm[x.dtype], x.element_size() * n, x.data_ptr(), out.data_ptr()
        dp = None if delta is None else delta.data_ptr()
        self._rows(lambda first, end: fn(xp + first * size, None if dp is None else dp + first * size,
                                         weight.data_ptr(), end - first, n, eps, op + first * size), rows)
        return out

    def silu_mul(self, gate_up: torch.Tensor) -> torch.Tensor:
        """gate_up: (rows, 2 * inter), gate then up -> silu(gate) * up, (rows, inter)."""
        self._check(gate_up.dtype, gate_up=gate_up)
        if gate_up.dim() != 2 or gate_up.shape[1] % 2:
            raise ValueError(f"gate_up must be (rows, 2 * intermediate), got {tuple(gate_up.shape)}")
        rows, inter = gate_up.shape[0], gate_up.shape[1] // 2
        out = gate_up.new_empty(rows, inter)
        fn, size, gp, op = self._silu[gate_up.dtype], gate_up.element_size() * inter, gate_up.data_ptr(), out.data_ptr()
        self._rows(lambda first, end: fn(gp + first * 2 * size, end - first, inter, op + first * size), rows)
        return out

    def rope_store(self, qkv: torch.Tensor, positions: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                   n_heads: int, n_kv_heads: int, slots: torch.Tensor, k_cache: torch.Tensor,
                   v_cache: torch.Tensor) -> torch.Tensor:
        """qkv: (rows, (n_heads + 2 n_kv_heads) head_dim); positions, slots: (rows,) int64; cos, sin: (P, head_dim);
        caches: (blocks, block_size, n_kv_heads, head_dim), any strides alike with head_dim contiguous. Rotates q and
        k, writes k and v at each row's slot, returns q (rows, n_heads, head_dim)."""
        self._check(qkv.dtype, qkv=qkv, cos=cos, sin=sin)
        layout = cache_layout(k_cache)
        if v_cache.stride() != k_cache.stride() or not k_cache.dtype == v_cache.dtype == qkv.dtype or not (
                k_cache.is_cpu and v_cache.is_cpu):
            raise ValueError(f"rope_store: k_cache and v_cache must be {qkv.dtype} CPU tensors with equal strides, got "
                             f"{k_cache.dtype} {k_cache.stride()} and {v_cache.dtype} {v_cache.stride()}")
        require_contiguous_cpu(("positions", positions, torch.int64), ("slots", slots, torch.int64))
        head_dim, rows = k_cache.shape[-1], qkv.shape[0]
        if (qkv.dim() != 2 or qkv.shape[1] != (n_heads + 2 * n_kv_heads) * head_dim or head_dim % 2
                or k_cache.shape[-2] != n_kv_heads
                or positions.shape != (rows,) or slots.shape != (rows,) or cos.shape[-1] != head_dim):
            raise ValueError(f"rope_store shapes disagree (head_dim must be even): qkv {tuple(qkv.shape)}, "
                             f"positions {tuple(positions.shape)}, "
                             f"slots {tuple(slots.shape)}, cos {tuple(cos.shape)}, cache {tuple(k_cache.shape)}")
        q = qkv.new_empty(rows, n_heads, head_dim)
        fn, size, width = self._rope[qkv.dtype], qkv.element_size(), qkv.shape[1]
        qkv_p, pos_p, slot_p, q_p = qkv.data_ptr(), positions.data_ptr(), slots.data_ptr(), q.data_ptr()
        cos_p, sin_p, k_p, v_p = cos.data_ptr(), sin.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr()
        num_slots, statuses = k_cache.shape[0] * k_cache.shape[1], []
        layout_array = (ctypes.c_int64 * 4)(*layout)
        self._rows(lambda first, end: statuses.append(fn(
            qkv_p + first * width * size, end - first, pos_p + first * 8, cos_p, sin_p, cos.shape[0], n_heads,
            n_kv_heads, head_dim, slot_p + first * 8, num_slots, layout_array, q_p + first * n_heads * head_dim * size, k_p, v_p)),
            rows)
        if any(statuses):
            raise ValueError(f"rope_store: positions must be in [0, {cos.shape[0]}) and slots in [0, {num_slots})")
        return q


@functools.cache
def layer_ops_kernel() -> LayerOpsKernel | None:
    """The compiled kernel, or None (logged once) where it cannot be built or loaded here."""
    return load("layer_ops.c", LayerOpsKernel)
