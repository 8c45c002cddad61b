"""Int8 weight-only quantization: per-output-channel symmetric scales, dequantized in the matmul."""

from __future__ import annotations

import torch
from torch import nn


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


class Dense(nn.Module):
    """y = x @ W.T + b with W stored transposed (in, out): a contiguous GEMV operand for decode."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        self.weight_t = nn.Parameter(weight.T.contiguous(), requires_grad=False)  # (in, out)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.weight_t
        return y if self.bias is None else y + self.bias


def dense(weight: torch.Tensor, bias: torch.Tensor | None, quantization: str | None) -> nn.Module:
    """A projection holding `weight` (out, in), quantized if asked."""
    return Int8Linear(weight, bias) if quantization == "int8" else Dense(weight, bias)
