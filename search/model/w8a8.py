"""The ``w8a8`` weight format: int8 weights and int8 activations, on fbgemm's int8 GEMM.

``int8`` (``search/model/weights.py``) keeps activations bf16 and de-quantizes each weight as it
multiplies; on a CPU with AVX-512 VNNI the multiply-add of bytes is several times faster, and it
needs the activations in 8 bits too. Each call quantizes them here, **one scale per row** (the row's
largest magnitude): fbgemm's dynamic linear quantizes its whole input with one range, so a batch
would let one row's range decide every other row's rounding, and a request's tokens would depend
on what else ran beside it. Each row is divided by its own scale, so every row lies in [-1, 1],
and a pinned extra row holding -1 and 1 fixes the range fbgemm picks to exactly that: a row's
output is the same alone, in any batch, at prefill or in a decode step. The extra row costs little
(the weights are read once for all rows).

Without VNNI, fbgemm multiplies bytes with a saturating 16-bit sum, so there the activations use
7 bits (``reduce_range``), as PyTorch's own dynamic quantization does.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import torch
from torch import nn


@functools.cache
def has_vnni() -> bool:
    """Whether this CPU multiplies bytes with VNNI (no 16-bit saturation in fbgemm's kernels)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def fbgemm_available() -> bool:
    """Whether this torch build runs fbgemm's quantized kernels (x86 builds do)."""
    return any(engine in torch.backends.quantized.supported_engines for engine in ("x86", "fbgemm"))


class W8A8Linear(nn.Module):
    """``y = x W^T + b`` with W as int8 (one scale per output channel, the codes ``int8`` keeps)
    and x quantized to 8 bits per row for each call."""

    def __init__(self, codes: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = codes.shape
        with warnings.catch_warnings():  # the quantized-tensor constructors warn they are deprecated
            warnings.simplefilter("ignore", UserWarning)
            weight = torch._make_per_channel_quantized_tensor(
                codes.contiguous(), scales.double(), torch.zeros(self.out_features, dtype=torch.long), 0
            )
            self._packed = torch.ops.quantized.linear_prepack(weight, None)
        self.register_buffer("bias", None if bias is None else bias.float())
        pin = torch.zeros(1, self.in_features)
        pin[0, 0], pin[0, -1] = 1.0, -1.0
        self._pin = pin
        self._reduce_range = not has_vnni()
        self.packed_bytes = codes.numel() + scales.numel() * 4  # what one call reads, for weight_bytes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).float()
        scale = flat.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)
        rows = torch.cat([flat / scale, self._pin])
        y = torch.ops.quantized.linear_dynamic(rows, self._packed, self._reduce_range)[:-1] * scale
        if self.bias is not None:
            y = y + self.bias
        return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
