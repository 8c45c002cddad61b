"""chatstack's C kernels for the CPU: built once per source and machine, loaded with ctypes.

The paged-attention kernel (`kernels/paged_attention.c`) reads keys and values in place
from the block-paged cache; the argmax kernel (`kernels/argmax.c`) picks greedy tokens; the
decode-step kernel (`kernels/decode_step.c`) runs every layer for a step that holds a single
decoding sequence; `layer_ops.py` wraps the fourth (`kernels/layer_ops.c`). Each is compiled
on first use with the system C compiler (`CC`, else `cc`) for this CPU (`-march=native`) into a cache folder
(`CHATSTACK_KERNEL_CACHE`, else `~/.cache/chatstack/kernels`), keyed by a hash of the
sources, the compiler and the CPU, so a source change or another machine builds afresh.
Where no compiler works, the `*_kernel()` loaders return None and the engine keeps its
torch path. ctypes releases the GIL for the call, so other threads keep running.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

LOG = logging.getLogger(__name__)
KERNELS = Path(__file__).with_name("kernels")
# x86: let the compiler's own vector loops use 512-bit registers where the CPU has them (GCC prefers 256 bits
# on these CPUs; measured 1.1-1.6x on the layer ops' loops); no effect on an AVX2-only CPU.
CFLAGS = ("-O3", "-march=native", "-fopenmp-simd", "-fPIC", "-shared", "-std=c11") + \
    (("-mprefer-vector-width=512",) if platform.machine() in ("x86_64", "AMD64") else ())


def _cpu_identity() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    wanted = ("model name", "flags")
    return "\n".join(sorted({line for line in lines if line.split(":")[0].strip() in wanted}))


def _compiler() -> str:
    return os.environ.get("CC") or "cc"  # unset or empty: the system compiler


def _cache_dir() -> Path:
    configured = os.environ.get("CHATSTACK_KERNEL_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "chatstack" / "kernels"


def build(source: Path) -> Path:
    """Compile `source` (if not cached) and return the shared library's path; raises on failure."""
    compiler = _compiler()
    # the compiler's messages are read as UTF-8 whatever the locale: GCC quotes names with curly quotes, which an
    # ASCII locale (a Triton model's process) failed to decode, and the kernel's build with it
    text = dict(capture_output=True, text=True, encoding="utf-8", errors="replace")
    version = subprocess.run([compiler, "--version"], check=True, **text).stdout
    headers = [h.read_text() for h in sorted(source.parent.glob("*.[ch]")) if h != source]  # what it may include
    key = hashlib.sha256("\0".join([source.read_text(), *headers, compiler, version, " ".join(CFLAGS),
                                    platform.machine(), _cpu_identity()]).encode()).hexdigest()[:16]
    target = _cache_dir() / f"{source.stem}-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / target.name
        result = subprocess.run([compiler, *CFLAGS, "-o", str(built), str(source), "-lm"], **text)
        if result.returncode != 0:
            raise RuntimeError(f"{compiler} failed on {source.name}: {result.stderr.strip()}")
        os.replace(built, target)  # atomic: concurrent builders each publish a whole file
    return target


def require_contiguous_cpu(*named: tuple[str, torch.Tensor, torch.dtype]) -> None:
    """Raise ValueError naming the first (name, tensor, dtype) that is not a contiguous CPU tensor of that dtype."""
    for name, tensor, dtype in named:
        if tensor.dtype != dtype or not tensor.is_contiguous() or tensor.device.type != "cpu":
            raise ValueError(f"{name} must be a contiguous CPU {dtype} tensor, got {tensor.dtype} on {tensor.device}")


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="cpu-kernel")


def run_parts(run, parts: tuple[tuple[int, int], ...]) -> list:
    """run(first, end) for each part, the first on this thread and the rest at once on the pool (the kernels
    release the GIL); their results in order."""
    others = [_pool().submit(run, *part) for part in parts[1:]]
    return [run(*parts[0])] + [future.result() for future in others]


def row_parts(rows: int, threads: int, min_rows: int = 32) -> tuple[tuple[int, int], ...]:
    """`rows` cut into at most `threads` contiguous ranges of at least `min_rows` rows (one range when small)."""
    count = max(1, min(threads, rows // min_rows))
    bounds = [rows * i // count for i in range(count + 1)]
    return tuple(zip(bounds[:-1], bounds[1:]))


class PagedAttentionKernel:
    """Typed wrapper around `chatstack_paged_attention_{f32,bf16}` (see the C source for layouts)."""

    DTYPES = {torch.float32: "f32", torch.bfloat16: "bf16"}

    def __init__(self, library: ctypes.CDLL):
        p, i64 = ctypes.c_void_p, ctypes.c_int64
        self._fns = {}
        for dtype, suffix in self.DTYPES.items():
            fn = getattr(library, f"chatstack_paged_attention_{suffix}")
            fn.argtypes = [p, i64, p, p, p, i64, p, p, i64, p, i64, i64, i64, i64, i64, i64, i64, ctypes.c_float]
            fn.restype = ctypes.c_int
            self._fns[dtype] = fn

    def __call__(self, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                 block_tables: torch.Tensor, query_token: torch.Tensor, query_pos: torch.Tensor,
                 out: torch.Tensor, scale: float, parts: tuple[tuple[int, int], ...] = ()) -> None:
        """`parts`: disjoint (first, end) query ranges run on as many threads at once (the GIL is released).
        q: (T, n_heads, head_dim), rows any stride apart; caches: (blocks, block_size, n_kv_heads, head_dim),
        any strides but a contiguous head_dim, both laid out alike; block_tables: (N, max_blocks) int32;
        query_token, query_pos: (N,) int64; out: (T, n_heads * head_dim). q, caches and out share one dtype,
        float32 or bfloat16."""
        dtype = q.dtype
        self._check_layouts(q, k_cache, v_cache)
        require_contiguous_cpu(("out", out, dtype), ("block_tables", block_tables, torch.int32),
                               ("query_token", query_token, torch.int64), ("query_pos", query_pos, torch.int64))
        _, n_heads, head_dim = q.shape
        _, block_size, n_kv_heads, _ = k_cache.shape
        max_blocks = block_tables.shape[1]

        def run(first: int, end: int) -> int:
            return self._fns[dtype](
                q.data_ptr(), q.stride(0), k_cache.data_ptr(), v_cache.data_ptr(),
                block_tables.data_ptr() + first * max_blocks * 4, max_blocks, query_token.data_ptr() + first * 8,
                query_pos.data_ptr() + first * 8, end - first, out.data_ptr(), n_heads, n_kv_heads, head_dim,
                block_size, k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), scale)

        parts = parts or ((0, query_token.shape[0]),)
        if any(not 0 <= first <= end <= query_token.shape[0] for first, end in parts):
            raise ValueError(f"parts must be ranges within [0, {query_token.shape[0]}], got {parts}")
        if any(run_parts(run, parts)):
            raise MemoryError("paged attention kernel could not allocate its score buffer")

    def _check_layouts(self, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor) -> None:
        dtype = q.dtype
        if dtype not in self._fns or q.device.type != "cpu" or q.stride()[1:] != (q.shape[2], 1):
            raise ValueError(f"q must be a float32 or bfloat16 CPU tensor with contiguous heads, got {q.dtype} on "
                             f"{q.device}, strides {q.stride()}")
        if k_cache.stride() != v_cache.stride() or k_cache.stride(3) != 1 or not k_cache.dtype == v_cache.dtype == dtype:
            raise ValueError(f"k_cache and v_cache must be {dtype} like q, with equal strides and a contiguous last "
                             f"dimension, got {k_cache.dtype} {k_cache.stride()} and {v_cache.dtype} {v_cache.stride()}")


class ArgmaxKernel:
    """Row-wise argmax of a float32 CPU matrix, equal to `torch.argmax(x, dim=-1)` (NaN included)."""

    def __init__(self, library: ctypes.CDLL):
        fn = library.chatstack_argmax_rows
        fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
        fn.restype = None
        self._fn = fn

    def __call__(self, x: torch.Tensor) -> list[int]:
        shape, strides = x.shape, x.stride()
        if len(shape) != 2 or x.dtype is not torch.float32 or not x.is_cpu or strides[1] != 1 or shape[1] == 0:
            raise ValueError(f"x must be a non-empty (rows, cols) float32 CPU matrix with contiguous rows, "
                             f"got {tuple(x.shape)} {x.dtype} on {x.device}")
        out = (ctypes.c_int64 * shape[0])()  # a ctypes array: cheaper than a tensor for a handful of rows
        self._fn(x.data_ptr(), shape[0], shape[1], strides[0], out)
        return list(out)


def cache_layout(cache: torch.Tensor) -> tuple[int, int, int, int]:
    """A layer's K (or V) cache, (blocks, block_size, n_kv_heads, head_dim) any strides with head_dim contiguous, as
    the C kernels take it: (block_size, block stride, slot stride, KV-head stride), strides in elements."""
    if cache.dim() != 4 or cache.stride(3) != 1:
        raise ValueError(f"a cache must be (blocks, block_size, n_kv_heads, head_dim) with a contiguous head_dim, "
                         f"got shape {tuple(cache.shape)} strides {cache.stride()}")
    return cache.shape[1], cache.stride(0), cache.stride(1), cache.stride(2)


class DecodeStepKernel:
    """`chatstack_decode_rows_f32` / `_bf16` / `_f32i8` / `_f32q4`: every layer, the final norm and the LM head for
    a batch of decoding tokens (see kernels/decode_step.c); `chatstack_decode_steps_*`: several greedy steps of one."""

    LAYER_POINTERS = 14
    DTYPES = {torch.float32: "f32", torch.bfloat16: "bf16"}
    # (activation dtype, weight dtype) -> the C functions' suffix; int8 weights carry a float32 scale per column,
    # int4 ones (uint8 bytes of two codes) a float32 scale and zero * scale per group of Q4_GROUP rows and column
    SUFFIXES = {(torch.float32, torch.float32): "f32", (torch.bfloat16, torch.bfloat16): "bf16",
                (torch.float32, torch.int8): "f32i8", (torch.float32, torch.uint8): "f32q4"}
    Q4_GROUP = 32  # decode_step_q4.h

    def __init__(self, library: ctypes.CDLL):
        p, i64 = ctypes.c_void_p, ctypes.c_int64
        self._fns, self._multi = {}, {}
        model_types = [p, i64, p, p, p, i64, p, p, i64, p, i64, i64]  # ... through cache_slots
        shape_types = [i64, i64, i64, i64, i64, p, ctypes.c_float]  # hidden through eps
        # bfloat16 by the AVX512-BF16 pair dot product, built only where the compiler targets it
        self.bf16_pairs = hasattr(library, "chatstack_decode_rows_bf16dp")
        for suffix in list(self.SUFFIXES.values()) + (["bf16dp"] if self.bf16_pairs else []):
            fn = getattr(library, f"chatstack_decode_rows_{suffix}")
            fn.argtypes = [i64, p, p, p] + model_types + [p] + shape_types
            fn.restype = ctypes.c_int
            self._fns[suffix] = fn
            multi = getattr(library, f"chatstack_decode_steps_{suffix}")
            multi.argtypes = [i64, i64, p, i64, p, p, p, p] + model_types + [i64] + shape_types
            multi.restype = ctypes.c_int
            self._multi[suffix] = multi
        self._matmul = library.chatstack_panel_matmul_f32
        self._matmul.argtypes = [p, i64, p, p, i64, i64, p]
        self._matmul.restype = None

    def matmul(self, x: torch.Tensor, weight_panels: torch.Tensor, out_features: int,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        """x (rows, in) @ W (in, out) [+ bias] in float32, W as `panels` gives it: the step's matmul alone."""
        if x.dim() != 2:
            raise ValueError(f"x must be (rows, in), got shape {tuple(x.shape)}")
        rows, k = x.shape
        require_contiguous_cpu(("x", x, torch.float32), ("weight_panels", weight_panels, torch.float32))
        if weight_panels.numel() != k * out_features:
            raise ValueError(f"weight_panels must hold in={k} x out={out_features} values, got {weight_panels.numel()}")
        if bias is not None:
            require_contiguous_cpu(("bias", bias, torch.float32))
            if bias.shape != (out_features,):
                raise ValueError(f"bias must be (out={out_features},), got {tuple(bias.shape)}")
        out = torch.empty(rows, out_features)
        self._matmul(x.data_ptr(), rows, weight_panels.data_ptr(), None if bias is None else bias.data_ptr(), k,
                     out_features, out.data_ptr())
        return out

    def prepare(self, layers, num_layers: int, final_norm: torch.Tensor, lm_head: torch.Tensor,
                lm_head_scale: torch.Tensor | None, vocab: int, cos: torch.Tensor, sin: torch.Tensor, cache_slots: int,
                n_heads: int, n_kv_heads: int, head_dim: int, intermediate: int, layout: tuple[int, int, int, int],
                eps: float, pairs: bool = False) -> "PreparedDecodeStep":
        """The step with the model's own arguments checked and bound once, for a caller that makes x (contiguous,
        of the weights' dtype) and block_table (contiguous int32) itself. A lone decoding sequence pays only the
        C call then (its Python around it was ~0.1 ms a token). `layers`: a ctypes array of LAYER_POINTERS
        pointers per layer (of the weights' dtype; projections as `panels` gives them), kept alive by the caller;
        lm_head: the (hidden, vocab) LM head as `panels` gives it, int8 with its float32 (vocab,) `lm_head_scale`
        or int4 (uint8, two codes a byte) with its (groups, 2, vocab) scales and zero * scales (and every layer's
        projections quantized alike) or of the activations' dtype; cos, sin: the whole (positions, head_dim) RoPE
        tables; layout: the caches' block size and block / slot / KV-head strides in elements (`cache_layout`);
        pairs: bfloat16 weights whose panels hold the rows in pairs (`row_words`), for the pair dot product."""
        dtype, key = final_norm.dtype, (final_norm.dtype, lm_head.dtype)
        if key not in self.SUFFIXES:
            raise ValueError(f"the decode step takes float32 or bfloat16 weights, or int8 / int4 (uint8) ones with "
                             f"float32 activations, got {lm_head.dtype} weights with {dtype} activations")
        suffix = self.SUFFIXES[key]
        if pairs:
            if suffix != "bf16" or not self.bf16_pairs:
                raise ValueError("weights in pairs are bfloat16 ones, where the kernel was built for AVX512-BF16")
            suffix = "bf16dp"
        quantized = lm_head.dtype in (torch.int8, torch.uint8)
        if quantized != (lm_head_scale is not None):
            raise ValueError("lm_head_scale goes with int8 or int4 weights, and only with them")
        require_contiguous_cpu(("final_norm", final_norm, dtype), ("lm_head", lm_head, lm_head.dtype),
                               ("cos", cos, dtype), ("sin", sin, dtype))
        hidden = final_norm.shape[0]
        groups = -(-hidden // self.Q4_GROUP)
        # int4: the codes of hidden rows padded to whole groups, two a byte; scales and zero * scales per group
        stored, scales = ((groups * self.Q4_GROUP // 2, (groups, 2, vocab)) if lm_head.dtype == torch.uint8
                          else (hidden, (vocab,)))
        if lm_head_scale is not None:
            require_contiguous_cpu(("lm_head_scale", lm_head_scale, torch.float32))
            if lm_head_scale.shape != scales:
                raise ValueError(f"lm_head_scale must be {scales} for vocab={vocab}, got {tuple(lm_head_scale.shape)}")
        if final_norm.dim() != 1 or lm_head.numel() != stored * vocab:
            raise ValueError(f"lm_head must hold ({stored}, vocab={vocab}) values for hidden={hidden}, "
                             f"got {lm_head.numel()}")
        model_args = (layers, num_layers, final_norm.data_ptr(), lm_head.data_ptr(),
                      None if lm_head_scale is None else lm_head_scale.data_ptr(), vocab, cos.data_ptr(),
                      sin.data_ptr(), cos.shape[0])  # then each call's block tables, their width and cache_slots
        layout_array = (ctypes.c_int64 * 4)(*layout)  # held by shape_args as long as the prepared step lives
        shape_args = (hidden, n_heads, n_kv_heads, head_dim, intermediate, layout_array, eps)
        return PreparedDecodeStep(self._fns[suffix], self._multi[suffix], dtype, vocab, layout[0], cos.shape[0],
                                  cache_slots, model_args, shape_args)


class PreparedDecodeStep:
    """One model's decode step with its arguments bound: `logits(...)` returns the (vocab,) logits; `greedy(...)`
    the argmax token the C step picked, into a logits buffer it reuses (nothing leaves the call but the token);
    `greedy_steps(...)` several such steps in one call; `rows(...)` one step of several sequences."""

    def __init__(self, fn, multi, dtype: torch.dtype, vocab: int, block_size: int, positions: int, cache_slots: int,
                 model_args: tuple, shape_args: tuple):
        self._fn, self._multi, self._dtype, self._vocab, self._cache_slots = fn, multi, dtype, vocab, cache_slots
        self._block_size, self._positions = block_size, positions
        self._model_args, self._shape_args = model_args, shape_args
        self._scratch = torch.empty(vocab, dtype=dtype)
        self._top = ctypes.c_int64(0)
        self._top_ptr = ctypes.addressof(self._top)
        self._position = ctypes.c_int64(0)
        self._position_ptr = ctypes.addressof(self._position)

    def _run(self, x: torch.Tensor, block_table: torch.Tensor, position: int, out: torch.Tensor, top) -> None:
        if not 0 <= position < min(block_table.shape[0] * self._block_size, self._positions):
            raise ValueError(f"position {position} is outside the block table ({block_table.shape[0]} blocks) "
                             f"or the RoPE tables ({self._positions} positions)")
        self._position.value = position
        self._call(1, x, out, top, block_table, block_table.shape[0], self._position_ptr)

    def _call(self, rows: int, x: torch.Tensor, out: torch.Tensor, top, tables: torch.Tensor, width: int,
              positions) -> None:
        status = self._fn(rows, x.data_ptr(), out.data_ptr(), top, *self._model_args, tables.data_ptr(), width,
                          self._cache_slots, positions, *self._shape_args)
        if status != 0:
            raise RuntimeError("decode step kernel failed: no scratch memory, or a block outside the cache")

    def rows(self, x: torch.Tensor, block_tables: torch.Tensor, positions: torch.Tensor,
             greedy: bool = False, threads: int = 1, min_rows: int = 1) -> torch.Tensor:
        """One step of len(positions) sequences: x (rows, hidden) their tokens' embeddings (overwritten: the residual
        streams), block_tables (rows, width) int32 each one's table (padded), positions (rows,) int64. Returns the
        (rows, vocab) logits, or with `greedy` the (rows,) int64 argmax tokens the C step picked.
        `threads` > 1 cuts the rows into that many parts of at least `min_rows`, each a C call of its own on a
        thread of its own: the sequences are independent (each writes only its own K/V slot), so the parts need
        no synchronisation, and each reads the whole weight stream."""
        rows = positions.shape[0]
        if not (x.dim() == 2 and x.shape[0] == rows and x.is_contiguous() and x.dtype == self._dtype):
            raise ValueError(f"x must be a contiguous ({rows}, hidden) {self._dtype} tensor, got {tuple(x.shape)}")
        if block_tables.dtype != torch.int32 or block_tables.dim() != 2 or block_tables.shape[0] != rows \
                or not block_tables.is_contiguous():
            raise ValueError(f"block_tables must be a contiguous ({rows}, width) int32 tensor")
        if positions.dtype != torch.int64 or not positions.is_contiguous():
            raise ValueError("positions must be a contiguous int64 tensor")
        limit = min(block_tables.shape[1] * self._block_size, self._positions)
        if rows < 1 or int(positions.min()) < 0 or int(positions.max()) >= limit:
            raise ValueError(f"positions must lie in [0, {limit}): inside the block tables "
                             f"({block_tables.shape[1]} blocks) and the RoPE tables ({self._positions} positions)")
        logits = torch.empty(rows, self._vocab, dtype=self._dtype)
        top = torch.empty(rows, dtype=torch.int64) if greedy else None

        def run(first: int, end: int) -> None:
            self._call(end - first, x[first:end], logits[first:end],
                       None if top is None else top[first:end].data_ptr(), block_tables[first:end],
                       block_tables.shape[1], positions[first:end].data_ptr())

        run_parts(run, row_parts(rows, threads, min_rows))
        return logits if top is None else top

    def logits(self, x: torch.Tensor, block_table: torch.Tensor, position: int) -> torch.Tensor:
        out = torch.empty(self._vocab, dtype=self._dtype)
        self._run(x, block_table, position, out, None)
        return out

    def greedy(self, x: torch.Tensor, block_table: torch.Tensor, position: int) -> int:
        self._run(x, block_table, position, self._scratch, self._top_ptr)
        return self._top.value

    def greedy_steps(self, embed: torch.Tensor, x: torch.Tensor, block_table: torch.Tensor, position: int, token: int,
                     steps: int, stop_ids: tuple[int, ...]) -> list[int]:
        """Up to `steps` greedy tokens from `token` at `position` on (the first is what `greedy` gives), ending
        after a token in `stop_ids`; embed: the (vocab, hidden) embedding rows the steps read their inputs from."""
        last = position + steps - 1
        if steps < 1 or not 0 <= position <= last < min(block_table.shape[0] * self._block_size, self._positions):
            raise ValueError(f"positions {position} to {last} are not all inside the block table "
                             f"({block_table.shape[0]} blocks) and the RoPE tables ({self._positions} positions)")
        if not 0 <= token < self._vocab:
            raise ValueError(f"token {token} is outside the vocabulary (0 to {self._vocab - 1})")
        tokens, stops = (ctypes.c_int64 * steps)(), (ctypes.c_int64 * max(len(stop_ids), 1))(*stop_ids)
        count = self._multi(steps, token, stops, len(stop_ids), tokens, embed.data_ptr(), x.data_ptr(),
                            self._scratch.data_ptr(), *self._model_args, block_table.data_ptr(), block_table.shape[0],
                            self._cache_slots, position, *self._shape_args)
        if count < 1:
            raise RuntimeError("decode step kernel failed: no scratch memory, or a block outside the cache")
        return tokens[:count]


def load(source: str, wrapper):
    try:
        return wrapper(ctypes.CDLL(str(build(KERNELS / source))))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        LOG.warning("CPU kernel %s unavailable, using the torch path: %s", source, exc)
        return None


@functools.cache
def paged_attention_kernel() -> PagedAttentionKernel | None:
    """The compiled kernel, or None (logged once) where it cannot be built or loaded here."""
    return load("paged_attention.c", PagedAttentionKernel)


@functools.cache
def decode_step_kernel() -> DecodeStepKernel | None:
    """The compiled kernel, or None (logged once) where it cannot be built or loaded here."""
    return load("decode_step.c", DecodeStepKernel)


@functools.cache
def argmax_kernel() -> ArgmaxKernel | None:
    """The compiled kernel, or None (logged once) where it cannot be built or loaded here."""
    return load("argmax.c", ArgmaxKernel)
