"""Weight-only quantization, dequantized inside the matmul.

- int8: symmetric, one scale per output channel.
- int4: asymmetric (scale + zero point) per group of `INT4_GROUP_SIZE` input channels,
  two 4-bit values packed per byte. A plain torch implementation: it unpacks the whole
  weight every call, so it saves memory (about 6.4x vs fp32 with group 32) but is slower
  than fp32 on CPU; a fused int4 GEMM kernel would go in `Int4Linear.forward`.
"""

from __future__ import annotations

import functools
import logging
import time

import torch
from torch import nn

log = logging.getLogger(__name__)


class Int8Linear(nn.Module):
    """y = (x @ q) * scale, with q int8 (in, out) and scale (out,) = max|w_row| / 127.

    The int8 weight is widened to the activation dtype inside the matmul: 4x less weight
    memory than fp32. (`torch._weight_int8pack_mm` was ~10x slower than this on the AVX2
    test machine, so it is not used.)
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        scale = weight.float().abs().amax(dim=1).clamp(min=1e-12) / 127.0  # (out,)
        quantized = torch.round(weight.float() / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("weight_t", quantized.T.contiguous())  # (in, out)
        self.register_buffer("scale", scale.to(weight.dtype))
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x @ self.weight_t.to(x.dtype)) * self.scale
        return y if self.bias is None else y + self.bias


def onednn_runs(dtype: torch.dtype) -> bool:
    """Whether this CPU's oneDNN runs `dtype` matmuls natively (bfloat16 needs AVX-512 BW/VL/DQ or AVX-NE-CONVERT;
    float32 always)."""
    if dtype == torch.float32:
        return True
    check = {torch.bfloat16: "_is_mkldnn_bf16_supported", torch.float16: "_is_mkldnn_fp16_supported"}.get(dtype)
    return (check is not None and torch.backends.mkldnn.is_available()
            and bool(getattr(torch.ops.mkldnn, check, lambda: False)()))


class Dense(nn.Module):
    """y = x @ W.T + b with W stored transposed (in, out): a contiguous GEMV operand for decode.

    The bias is added inside the matmul, before its one rounding. Half-precision weights on a CPU whose oneDNN cannot
    run them (AVX2 only) are widened to float32 inside each call: torch's own bfloat16 GEMM there took 56.6 ms for
    40 rows of a 512 x 1536 projection against 1.8 ms widened (one thread); the weight stays half size in memory.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        self.weight_t = nn.Parameter(weight.T.contiguous(), requires_grad=False)  # (in, out)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self.widen = weight.device.type == "cpu" and not onednn_runs(weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        weight_t, bias = self.weight_t, self.bias
        if self.widen:
            rows, weight_t, bias = rows.float(), weight_t.float(), None if bias is None else bias.float()
        y = rows @ weight_t if bias is None else torch.addmm(bias, rows, weight_t)
        return y.to(x.dtype).view(*x.shape[:-1], y.shape[-1])


class PackedDense(nn.Module):
    """y = x @ W.T + b with W reordered once, at load, into oneDNN's blocked layout.

    For bfloat16 / float16 on the CPU, and float32 where that pays (`float32_prepack_pays`). A plain
    half-precision matmul hands oneDNN a weight in the plain layout, which it reorders into its
    blocked (AMX / VNNI) layout on every call: on a 26.7 M model's layer weights (bfloat16, one
    thread, all layers in turn so they come from memory) one pass of the eight layers' projections
    took 5.8 ms at 8 rows and 6.8 ms at 40 rows, against 3.9 and 4.7 ms prepacked. Without a bias
    the half-precision results are bit-identical; a bias is added before the one rounding (the plain
    path rounds twice), so the result is at least as close to float32. A float32 result differs from
    MKL's only in the order of its sums.
    `keep_plain` also keeps W transposed (in, out) as `weight_t`, for the one-call decode step
    (single_decode.py), which packs it into its own layout; the model runner then drops it.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, keep_plain: bool = False):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("packed", torch.ops.mkldnn._reorder_linear_weight(weight, None))
        self.register_buffer("weight_t", weight.T.contiguous() if keep_plain else None)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    @staticmethod
    def applies(weight: torch.Tensor, float32: bool = False) -> bool:
        """Half-precision weights on a CPU whose oneDNN runs that dtype (on an AVX2-only CPU it refuses to reorder
        bfloat16; `Dense` widens there instead); float32 weights where `float32` says so (`float32_prepack_pays`)."""
        wanted = weight.dtype in (torch.bfloat16, torch.float16) or (float32 and weight.dtype == torch.float32)
        return (weight.device.type == "cpu" and wanted and onednn_runs(weight.dtype)
                and hasattr(torch.ops.mkldnn, "_linear_pointwise"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


# The probe's shape: 64 rows (a decode batch) through a 512 -> 2048 projection, ~134 MFLOP a call.
PROBE_ROWS, PROBE_IN, PROBE_OUT = 64, 512, 2048
FLOAT32_PREPACK_MIN_SPEEDUP = 1.2


@functools.cache
def float32_prepack_pays(threads: int) -> bool:
    """Whether float32 projections run faster prepacked for oneDNN than as the plain matmul (MKL) on this CPU, at
    `threads` (torch's thread count, which the caller passes): timed once per process and count (~50 ms), the two
    taking turns, the best of five rounds each; the prepacked layout must win by FLOAT32_PREPACK_MIN_SPEEDUP. MKL's
    AVX-512 code runs on Intel CPUs only, so on an AVX-512 AMD CPU oneDNN's kernels were 2.3-3x faster on the 26.7 M
    benchmark model's shapes; on AVX2 CPUs the two are close and the plain matmul stays."""
    if not PackedDense.applies(torch.zeros(0), float32=True):
        return False
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(PROBE_ROWS, PROBE_IN, generator=generator)
    weight = torch.randn(PROBE_OUT, PROBE_IN, generator=generator)
    plain, packed = Dense(weight), PackedDense(weight)
    best = {"plain": float("inf"), "prepacked": float("inf")}
    with torch.inference_mode():
        for _ in range(5):
            for name, projection in (("plain", plain), ("prepacked", packed)):
                projection(x)  # its first call at this shape sets oneDNN's kernel up
                start = time.perf_counter()
                for _ in range(3):
                    projection(x)
                best[name] = min(best[name], (time.perf_counter() - start) / 3)
    speedup = best["plain"] / best["prepacked"]
    log.info("float32 projections: prepacked (oneDNN) %.2fx the plain matmul here (%.2f vs %.2f ms a %dx%dx%d "
             "call, %d threads): %s", speedup, best["prepacked"] * 1e3, best["plain"] * 1e3, PROBE_ROWS, PROBE_IN,
             PROBE_OUT, threads, "prepacked" if speedup >= FLOAT32_PREPACK_MIN_SPEEDUP else "plain")
    return speedup >= FLOAT32_PREPACK_MIN_SPEEDUP


INT4_GROUP_SIZE = 32


class Int4Linear(nn.Module):
    """y = x @ W.T + b with W stored as packed unsigned 4-bit codes per input-channel group.

    For each output channel and group of `group_size` input channels:
    scale = (max - min) / 15, zero = round(-min / scale), code = clamp(round(w / scale) + zero, 0, 15),
    w ~ (code - zero) * scale. Codes are packed two per byte along the input dimension
    (even rows in the low nibble), laid out (in/2, out) so unpacking yields the transposed
    weight directly. An input dimension that is not a multiple of the group is zero-padded.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, group_size: int = INT4_GROUP_SIZE):
        super().__init__()
        if group_size < 2 or group_size % 2:
            raise ValueError(f"group_size must be an even number >= 2, got {group_size}")
        out_features, in_features = weight.shape
        padded = -(-in_features // group_size) * group_size
        w = torch.zeros(out_features, padded, dtype=torch.float32, device=weight.device)
        w[:, :in_features] = weight.float()
        groups = w.view(out_features, padded // group_size, group_size)
        low, high = groups.amin(dim=-1), groups.amax(dim=-1)  # (out, groups)
        scale = ((high - low) / 15).clamp(min=1e-12)
        zero = torch.round(-low / scale).clamp(0, 15)
        codes = (torch.round(groups / scale[..., None]) + zero[..., None]).clamp(0, 15).to(torch.uint8)
        codes_t = codes.view(out_features, padded).T  # (in_padded, out)
        self.register_buffer("packed", (codes_t[0::2] | (codes_t[1::2] << 4)).contiguous())  # (in_padded/2, out)
        self.register_buffer("scale", scale.T.contiguous().to(weight.dtype))  # (groups, out)
        self.register_buffer("zero", zero.T.contiguous().to(weight.dtype))  # (groups, out)
        self.in_features, self.group_size = in_features, group_size
        self.bias = bias

    def dequantized_t(self, dtype: torch.dtype) -> torch.Tensor:
        """The weight as (in, out) in `dtype`."""
        codes = torch.stack([self.packed & 0x0F, self.packed >> 4], dim=1)  # (in_padded/2, 2, out)
        groups = codes.view(self.scale.shape[0], self.group_size, -1).to(dtype)  # (groups, group, out)
        weight_t = (groups - self.zero.to(dtype)[:, None]) * self.scale.to(dtype)[:, None]
        return weight_t.view(-1, weight_t.shape[-1])[:self.in_features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.dequantized_t(x.dtype)
        return y if self.bias is None else y + self.bias


def dense(weight: torch.Tensor, bias: torch.Tensor | None, quantization: str | None,
          prepack: bool = True, keep_plain: bool = False, prepack_float32: bool = False) -> nn.Module:
    """A projection holding `weight` (out, in), quantized if asked; `prepack=False` keeps a plain matmul (what
    torch.compile can trace: it does its own weight layout); `prepack_float32` prepacks float32 weights too;
    `keep_plain` keeps a plain (in, out) copy beside a prepacked weight."""
    if quantization == "int8":
        return Int8Linear(weight, bias)
    if quantization == "int4":
        return Int4Linear(weight, bias)
    if prepack and PackedDense.applies(weight, prepack_float32):
        return PackedDense(weight, bias, keep_plain)
    return Dense(weight, bias)
