"""Weight formats (search/model/weights.py): the int8 / int4 layers against the bf16 ones, the
whole model path on a tiny random model (batched calls and KV reuse included), the on-disk copy,
and the one-line errors for a bad ``--dtype`` or ``--device``."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from torch import nn

from search.model.bundled import ModelError
from search.model.lm import GenerationParams
from search.model.w8a8 import W8A8Linear
from search.model.weights import (
    Int4Linear,
    Int8Linear,
    check_model_options,
    load_quantized,
    parse_weight_format,
    quantize,
    quantized_layer,
    quantized_path,
    resolve_format,
    weight_bytes,
)
from tests.tiny_model import make_tiny_lm


def _linear(out_features: int = 96, in_features: int = 128, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    layer = nn.Linear(in_features, out_features, bias=True).to(torch.bfloat16)
    return layer


class _W8A8:  # W8A8Linear from an nn.Linear, as the parametrized layer test builds the others
    of = functools.partial(quantized_layer, fmt="w8a8")


@pytest.mark.parametrize(("cls", "tolerance"), [(Int8Linear, 0.02), (Int4Linear, 0.15), (_W8A8, 0.03)])
def test_quantized_layer_matches_the_bf16_layer(cls, tolerance) -> None:  # type: ignore[no-untyped-def]
    layer = _linear()
    x = torch.randn(3, 5, 128, dtype=torch.bfloat16)
    want = layer(x).float()
    got = cls.of(layer)(x).float()
    assert got.shape == want.shape
    relative = (got - want).norm() / want.norm()
    assert relative < tolerance
    # and it is not the identity of a zero layer: a different weight gives a different output
    other = cls.of(_linear(seed=1))(x).float()
    assert (other - want).norm() / want.norm() > 0.5


def test_w8a8_gives_a_row_the_same_output_alone_and_in_any_batch() -> None:
    layer = _W8A8.of(_linear())
    torch.manual_seed(3)
    row = torch.randn(1, 128, dtype=torch.bfloat16)
    loud = torch.randn(4, 128, dtype=torch.bfloat16) * 50  # rows of another range beside it
    quiet = torch.randn(2, 128, dtype=torch.bfloat16) * 0.01
    alone = layer(row)
    assert torch.equal(layer(torch.cat([loud, row]))[-1:], alone)
    assert torch.equal(layer(torch.cat([row, quiet]))[:1], alone)
    assert torch.equal(layer(torch.zeros(1, 128, dtype=torch.bfloat16)), layer.bias.to(torch.bfloat16)[None])


def test_int4_refuses_an_input_size_it_cannot_group() -> None:
    with pytest.raises(ValueError, match="divisible by 32"):
        Int4Linear.of(_linear(in_features=40))


def _tiny(fmt: str):  # type: ignore[no-untyped-def]
    lm = make_tiny_lm(dtype=torch.bfloat16)
    replaced = quantize(lm.model, fmt)
    return lm, replaced


@pytest.mark.parametrize("fmt", ["int8", "int4", "w8a8"])
def test_every_linear_layer_is_quantized_lm_head_included(fmt: str) -> None:
    bf16 = make_tiny_lm(dtype=torch.bfloat16)
    before = weight_bytes(bf16.model)
    lm, replaced = _tiny(fmt)
    assert replaced == 2 * 7 + 1  # q, k, v, o, gate, up, down in each of 2 layers, and lm_head
    assert not any(isinstance(m, nn.Linear) for m in lm.model.modules())
    assert weight_bytes(lm.model) < before * (0.4 if fmt == "int4" else 0.6)


@pytest.mark.parametrize("fmt", ["int8", "int4", "w8a8"])
def test_a_quantized_model_keeps_batched_calls_and_kv_reuse_exact(fmt: str) -> None:
    lm, _ = _tiny(fmt)
    prompts = [lm.encode("def add(a, b):\n"), lm.encode("def mul(x, y):\n    return")]
    params = GenerationParams(max_new_tokens=6)
    batched = lm.rollouts(prompts, params)
    lm.kv.clear()
    single = [lm.rollouts([p], params)[0] for p in prompts]
    assert [r.token_ids for r in batched] == [r.token_ids for r in single]
    # extending a cached prefix processes only the new token and gives the same distribution
    prefix = prompts[0] + batched[0].token_ids[:3]
    lm.kv.clear()
    cold = lm.next_token_dists([prefix], 5)[0]
    warm = lm.next_token_dists([prefix], 5)[0]
    assert cold.token_ids == warm.token_ids


def test_quantized_weights_are_written_once_and_read_back(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TREEDEC_HOME", str(tmp_path))
    first = make_tiny_lm(dtype=torch.bfloat16)
    load_quantized(first.model, "int8", "tiny", "rev1")
    path = quantized_path("tiny", "rev1", "int8")
    assert path.exists()
    second = make_tiny_lm(dtype=torch.bfloat16)
    # other linear weights: if the file were not read, the outputs would differ
    torch.manual_seed(5)
    for module in second.model.modules():
        if isinstance(module, nn.Linear) and module is not second.model.lm_head:
            module.weight.data.normal_()
    load_quantized(second.model, "int8", "tiny", "rev1")
    x = torch.tensor([first.encode("def f(x):")])
    with torch.inference_mode():
        assert torch.equal(first.model(x).logits, second.model(x).logits)


def test_a_file_from_another_build_is_rewritten(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import save_file

    monkeypatch.setenv("TREEDEC_HOME", str(tmp_path))
    path = quantized_path("tiny", "rev1", "int4")
    path.parent.mkdir(parents=True)
    save_file({"x": torch.zeros(1)}, str(path), metadata={"format": "int4", "layout": "old"})
    lm = make_tiny_lm(dtype=torch.bfloat16)
    assert load_quantized(lm.model, "int4", "tiny", "rev1") == 15
    assert lm.rollouts([lm.encode("def f():")], GenerationParams(max_new_tokens=3))[0].token_ids


def test_formats_parse_and_bad_ones_name_the_choices() -> None:
    assert parse_weight_format("BF16") == "bf16"
    assert parse_weight_format("float32") == "fp32"
    with pytest.raises(ModelError, match="choose one of: auto, bf16, fp16, fp32, int8, int4, w8a8"):
        parse_weight_format("q4_k_m")
    assert resolve_format(torch.device("cpu"), "int8") == "int8"
    assert resolve_format(torch.device("cpu"), "auto") == "int8"  # w8a8 is opt-in: see CPU_AUTO
    assert resolve_format(torch.device("cpu"), "bf16") == "bf16"
    assert resolve_format(torch.device("cpu"), "int8-dynamic") == "w8a8"


def test_w8a8_reads_the_int8_file_and_refuses_a_torch_without_fbgemm(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TREEDEC_HOME", str(tmp_path))
    lm = make_tiny_lm(dtype=torch.bfloat16)
    assert load_quantized(lm.model, "w8a8", "tiny", "rev1") == 15
    assert quantized_path("tiny", "rev1", "int8").exists()
    assert not quantized_path("tiny", "rev1", "w8a8").exists()
    assert all(isinstance(m, W8A8Linear) for m in lm.model.modules() if hasattr(m, "packed_bytes"))
    monkeypatch.setattr("search.model.weights.fbgemm_available", lambda: False)  # e.g. an ARM build
    with pytest.raises(ModelError, match="w8a8 runs fbgemm's int8 kernels.*use --dtype int8"):
        resolve_format(torch.device("cpu"), "w8a8")


def test_quantized_formats_are_refused_on_cuda() -> None:
    with pytest.raises(ModelError, match="CPU kernels; on cuda use --dtype bf16 or fp16"):
        resolve_format(torch.device("cuda"), "int4")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_device_is_one_line() -> None:
    with pytest.raises(ModelError, match="no CUDA device is available here.*use --device cpu or auto"):
        check_model_options("cuda", "auto")


def test_an_unknown_device_names_the_choices() -> None:
    with pytest.raises(ModelError, match="choose one of: auto, cpu, cuda, cuda:N"):
        check_model_options("tpu", "auto")


@pytest.mark.parametrize("cls", [Int8Linear, Int4Linear])
def test_many_rows_take_the_dense_copy_and_agree_with_the_kernel(cls) -> None:  # type: ignore[no-untyped-def]
    layer = cls.of(_linear())
    rows = layer.kernel_max_rows + 2
    x = torch.randn(rows, 5, 128, dtype=torch.bfloat16)[:, -1:, :]  # strided, as a last-position slice
    dense = layer(x).float()
    assert dense.shape == (rows, 1, 96)
    kernel = torch.cat([layer(x[i : i + 1]) for i in range(rows)]).float()  # one row at a time
    assert ((dense - kernel).norm() / kernel.norm()) < 0.01
