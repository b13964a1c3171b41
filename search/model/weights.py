"""Where a model runs and in what weight format: the ``--device`` and ``--dtype`` choices, checked
once with a one-line error, and the int8 / int4 weight-only formats for CPU decoding.

Decoding one token is memory-bound: every step reads every weight once, so bytes per weight set
the speed limit. ``int8`` keeps one signed byte per weight with a scale per output channel;
``int4`` keeps half a byte with a scale and an offset per group of 32 inputs. Activations and the
KV cache stay bf16. Both run torch's own CPU kernels (``aten._weight_int8pack_mm``,
``aten._weight_int4pack_mm_for_cpu``), so nothing beyond torch is needed. Every ``nn.Linear``
is quantized, ``lm_head`` included (a quarter of the bytes read each step for the bundled 0.5B
model); the token embedding stays bf16 (a lookup reads one row, not the matrix).

``w8a8`` runs ``int8``'s codes (the same file on disk) with the activations in 8 bits too, one
scale per row, on fbgemm's int8 GEMM (``search/model/w8a8.py``): on a CPU with VNNI a decode step
and a wide batch cost about half of ``int8``'s, for a larger error (bench/results/quant_error.json).

The int4 weights are re-quantized from the bf16 copy the bundled GGUF was converted to once
(not read from the GGUF's own Q4_K blocks), so every model a path or hub id names gets them too.

>>> parse_weight_format("bfloat16")
'bf16'
>>> parse_weight_format("int3")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
search.model.bundled.ModelError: unknown --dtype 'int3'; choose one of: auto, bf16, ..., int4, w8a8
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from search.model.bundled import ModelError, treedec_home
from search.model.w8a8 import W8A8Linear, fbgemm_available

# the weight formats a user can name, and the spellings each accepts
WEIGHT_FORMATS: dict[str, tuple[str, ...]] = {
    "auto": ("auto",),
    "bf16": ("bf16", "bfloat16"),
    "fp16": ("fp16", "float16"),
    "fp32": ("fp32", "float32"),
    "int8": ("int8",),
    "int4": ("int4",),
    "w8a8": ("w8a8", "int8-dynamic"),
}
QUANTIZED = ("int8", "int4", "w8a8")
# what ``auto`` picks on a CPU: the fastest format whose HumanEval pass count holds against bf16's
# (docs/results.md, "Quantized weights (CPU)": PG-TD 113 in int8 against 114; int4 lost 7 in 105).
# w8a8 holds for PG-TD (115) and is 1.5-2.4x as fast, but its greedy decoding loses HumanEval/0,
# the problem a first try solves (9 lost, 6 gained against int8): opt-in until more greedy evidence
CPU_AUTO = "int8"
INT4_GROUP = 32
_TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def parse_weight_format(dtype: str) -> str:
    """The canonical name of a ``--dtype`` value; an unknown one is a ``ModelError`` naming the choices."""
    for name, spellings in WEIGHT_FORMATS.items():
        if dtype.lower() in spellings:
            return name
    raise ModelError(f"unknown --dtype {dtype!r}; choose one of: {', '.join(WEIGHT_FORMATS)}")


def pick_device(device: str = "auto") -> torch.device:
    """The torch device a ``--device`` value names; one that this machine lacks is a ``ModelError``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ModelError(f"unknown --device {device!r}; choose one of: auto, cpu, cuda, cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
            raise ModelError(
                f"--device {device}: no CUDA device is available here (torch {torch.__version__}, "
                f"{build}); use --device cpu or auto"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise ModelError(f"--device {device}: this machine has {count} CUDA device(s)")
    return dev


def resolve_format(device: torch.device, dtype: str = "auto") -> str:
    """The weight format a model loads in: ``auto`` is bf16 (or fp16) on CUDA and
    ``CPU_AUTO`` (int8) on a CPU; the quantized formats run torch's CPU kernels
    only, so on CUDA they are refused."""
    fmt = parse_weight_format(dtype)
    if fmt == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return CPU_AUTO
    if fmt in QUANTIZED and device.type != "cpu":
        raise ModelError(f"--dtype {fmt} uses torch's CPU kernels; on {device.type} use --dtype bf16 or fp16")
    if fmt == "w8a8" and not fbgemm_available():
        raise ModelError(
            "--dtype w8a8 runs fbgemm's int8 kernels, which this torch build lacks; use --dtype int8"
        )
    return fmt


def check_model_options(device: str = "auto", dtype: str = "auto") -> str:
    """The weight format ``--device`` and ``--dtype`` load in on this machine; an unusable pair is a
    ``ModelError`` that names the choices."""
    return resolve_format(pick_device(device), dtype)


def identity_dtype(fmt: str) -> str:
    """How a model's identity names its weight format: bf16 keeps the name it had before quantized
    formats existed (``bfloat16``), so its cache keys and rows stay valid."""
    return fmt if fmt in QUANTIZED else str(activation_dtype(fmt)).replace("torch.", "")


def activation_dtype(fmt: str) -> torch.dtype:
    """The dtype activations and the KV cache keep: bf16 under quantized weights."""
    return _TORCH_DTYPES.get(fmt, torch.bfloat16)


class _QuantizedLinear(nn.Module):
    """What the int8 and int4 layers share: a call of at most ``kernel_max_rows`` rows runs the
    packed kernel (``_kernel``); more rows (prefill, wide batches) run ``dense``, the same weights
    de-quantized, where the one-row-at-a-time kernels are slower than a dense matmul. ``dense`` is
    not a buffer: neither saved nor counted as read by a decode step."""

    kernel_max_rows: int
    in_features: int
    out_features: int
    dense: torch.Tensor
    bias: torch.Tensor | None

    def _kernel(self, flat: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).contiguous()
        if flat.shape[0] > self.kernel_max_rows:
            # on the flat rows: a strided 3-D input would make linear copy the weight per batch row
            y = nn.functional.linear(flat, self.dense.to(x.dtype), self.bias)
        else:
            y = self._kernel(flat)
            if self.bias is not None:
                y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


class Int8Linear(_QuantizedLinear):
    """``y = x W^T + b`` with W as int8 and one scale per output channel (symmetric)."""

    kernel_max_rows = 4  # above this many rows, the dense copy is faster (bench/engine.py)
    weight_int8: torch.Tensor
    scales: torch.Tensor

    def __init__(self, codes: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("weight_int8", codes)
        self.register_buffer("scales", scales)
        self.register_buffer("bias", bias)
        self.out_features, self.in_features = codes.shape
        self.dense = (codes.float() * scales.float()[:, None]).to(scales.dtype)

    @staticmethod
    def quantize(linear: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
        """The int8 codes and the per-output-channel scales of a layer."""
        weight = linear.weight.detach()
        scale = (weight.abs().amax(dim=1).float() / 127).clamp(min=1e-12)
        codes = torch.round(weight.float() / scale[:, None]).clamp(-127, 127).to(torch.int8)
        return codes, scale.to(weight.dtype)

    @classmethod
    def of(cls, linear: nn.Linear) -> Int8Linear:
        bias = None if linear.bias is None else linear.bias.detach().clone()
        return cls(*cls.quantize(linear), bias)

    def _kernel(self, flat: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int8pack_mm(flat, self.weight_int8, self.scales.to(flat.dtype))


class Int4Linear(_QuantizedLinear):
    """``y = x W^T + b`` with W as 4-bit codes, a scale and an offset per group of inputs, packed
    for torch's CPU int4 kernel (asymmetric: ``w = (q - 8) * scale + mid``)."""

    kernel_max_rows = 16  # above this many rows, the dense copy is faster (bench/engine.py)
    weight_int4: torch.Tensor
    scales_and_zeros: torch.Tensor

    def __init__(
        self,
        codes: torch.Tensor,
        scales_and_zeros: torch.Tensor,
        bias: torch.Tensor | None,
        group: int = INT4_GROUP,
    ) -> None:
        super().__init__()
        # the codes (uint8, one per weight) are what is saved; the packed layout depends on the
        # torch build and the CPU, so it is made here
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32), 1)
        self.register_buffer("weight_int4", packed)
        self.register_buffer("scales_and_zeros", scales_and_zeros)
        self.register_buffer("bias", bias)
        self.group = group
        self.out_features, self.in_features = codes.shape
        scale = scales_and_zeros[..., 0].t().float().repeat_interleave(group, dim=1)
        mid = scales_and_zeros[..., 1].t().float().repeat_interleave(group, dim=1)
        self.dense = ((codes.float() - 8) * scale + mid).to(scales_and_zeros.dtype)

    @staticmethod
    def quantize(linear: nn.Linear, group: int = INT4_GROUP) -> tuple[torch.Tensor, torch.Tensor]:
        """The 4-bit codes (uint8) and the ``[groups, out, 2]`` scales and offsets of a layer."""
        weight = linear.weight.detach().float()
        out_features, in_features = weight.shape
        if in_features % group:
            raise ValueError(f"int4 needs in_features divisible by {group}, got {in_features}")
        grouped = weight.reshape(out_features, in_features // group, group)
        low, high = grouped.amin(-1, keepdim=True), grouped.amax(-1, keepdim=True)
        scale = ((high - low) / 15).clamp(min=1e-12)
        codes = torch.round((grouped - low) / scale).clamp(0, 15).to(torch.uint8)
        mid = low + 8 * scale  # the kernel reads a code q as (q - 8) * scale + mid
        scales_and_zeros = torch.stack(
            [scale.squeeze(-1).t().contiguous(), mid.squeeze(-1).t().contiguous()], dim=-1
        ).to(linear.weight.dtype)
        return codes.reshape(out_features, in_features), scales_and_zeros

    @classmethod
    def of(cls, linear: nn.Linear, group: int = INT4_GROUP) -> Int4Linear:
        codes, scales_and_zeros = cls.quantize(linear, group)
        bias = None if linear.bias is None else linear.bias.detach().clone()
        return cls(codes, scales_and_zeros, bias, group)

    def _kernel(self, flat: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int4pack_mm_for_cpu(
            flat, self.weight_int4, self.group, self.scales_and_zeros.to(flat.dtype)
        )


def _linears(model: Any) -> list[tuple[str, nn.Linear]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def _replace(model: Any, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def stored_format(fmt: str) -> str:
    """The format whose codes a format is built from: ``w8a8`` runs ``int8``'s codes."""
    return "int8" if fmt == "w8a8" else fmt


def quantized_state(model: Any, fmt: str) -> dict[str, torch.Tensor]:
    """What the int8 or int4 form of every ``nn.Linear`` (``lm_head`` included) is made of: codes,
    scales (and int4's offsets), bias. A layer int4 cannot group (an input size not divisible by
    the group) gets int8."""
    state: dict[str, torch.Tensor] = {}
    for name, linear in _linears(model):
        if fmt == "int4" and linear.in_features % INT4_GROUP == 0:
            codes, scales_and_zeros = Int4Linear.quantize(linear)
            state[f"{name}.codes_int4"], state[f"{name}.scales_and_zeros"] = codes, scales_and_zeros
        else:
            state[f"{name}.weight_int8"], state[f"{name}.scales"] = Int8Linear.quantize(linear)
        if linear.bias is not None:
            state[f"{name}.bias"] = linear.bias.detach().clone()
    return state


def quantized_layer(linear: nn.Linear, fmt: str) -> nn.Module:
    """One layer in ``fmt`` (``int8``, ``int4`` or ``w8a8``), built directly from its weights."""
    if fmt == "w8a8":  # int8's codes, run by fbgemm
        bias = None if linear.bias is None else linear.bias.detach().clone()
        return W8A8Linear(*Int8Linear.quantize(linear), bias)
    return Int4Linear.of(linear) if fmt == "int4" else Int8Linear.of(linear)


def quantize(model: Any, fmt: str) -> int:
    """Replace every ``nn.Linear`` of ``model`` by its int8, int4 or w8a8 form, in place; returns how many
    were replaced. A tied embedding keeps its own bf16 matrix."""
    if fmt not in QUANTIZED:
        return 0
    return _read(model, quantized_state(model, stored_format(fmt)), fmt)


def _stamp(fmt: str, revision: str) -> dict[str, str]:
    return {"format": fmt, "revision": revision, "layout": "codes-v1"}


def quantized_path(name: str, revision: str, fmt: str) -> Path:
    return treedec_home() / "quantized" / f"{name}-{revision}-{fmt}.safetensors"


def _read(model: Any, state: dict[str, torch.Tensor], fmt: str) -> int:
    """Replace every ``nn.Linear`` by its quantized form in ``fmt`` from a saved ``state``."""
    targets = _linears(model)
    for name, linear in targets:
        bias = state[f"{name}.bias"] if linear.bias is not None else None
        module: nn.Module
        if f"{name}.codes_int4" in state:
            module = Int4Linear(state[f"{name}.codes_int4"], state[f"{name}.scales_and_zeros"], bias)
        elif fmt == "w8a8":
            module = W8A8Linear(state[f"{name}.weight_int8"], state[f"{name}.scales"], bias)
        else:
            module = Int8Linear(state[f"{name}.weight_int8"], state[f"{name}.scales"], bias)
        _replace(model, name, module)
    return len(targets)


def load_quantized(model: Any, fmt: str, name: str, revision: str) -> int:
    """``quantize``, with the result kept on disk the first time: later loads read it instead of
    quantizing again (seconds saved on every start). A file of another layout is ignored and
    rewritten."""
    if fmt not in QUANTIZED:
        return 0
    run_as, fmt = fmt, stored_format(fmt)
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = quantized_path(name, revision, fmt)
    stamp = _stamp(fmt, revision)
    if path.exists():
        with safe_open(str(path), framework="pt") as f:
            same_build = f.metadata() == stamp
        if same_build:
            # copied: tensors read from the file may sit at unaligned offsets, which the packed
            # kernels do not accept
            return _read(model, {k: v.clone() for k, v in load_file(str(path)).items()}, run_as)
    state = quantized_state(model, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata=stamp)
    os.replace(tmp, path)
    return _read(model, state, run_as)


def weight_bytes(model: Any) -> int:
    """Bytes of weights one decode step reads: every module's own parameters and buffers except an
    embedding's (a lookup reads one row), so a ``lm_head`` tied to the embedding counts once."""
    total = 0
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            continue
        for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
            total += tensor.numel() * tensor.element_size()
        total += getattr(module, "packed_bytes", 0)  # a packed weight is not a tensor
    return total
