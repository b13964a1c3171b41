"""treedec's CPU attention against torch's scaled_dot_product_attention, on float32 inputs where
both should agree to rounding: decode steps, prefills, padded rows, long prefills in blocks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from search.model import attention
from search.model.attention import ATTENTION, grouped_attention


def reference(query, key, value, mask):  # type: ignore[no-untyped-def]
    group = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(group, 1), value.repeat_interleave(group, 1)
    if mask is None:  # causal, the queries being the last positions (sdpa's is_causal aligns them first)
        n_query, length = query.shape[2], key.shape[2]
        mask = torch.ones(n_query, length, dtype=torch.bool).tril(length - n_query)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
    return out.transpose(1, 2)


def inputs(batch: int, n_query: int, length: int, seed: int = 0):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, 6, n_query, 16, generator=g)
    k = torch.randn(batch, 2, length, 16, generator=g)
    v = torch.randn(batch, 2, length, 16, generator=g)
    return q, k, v


@pytest.mark.parametrize(("n_query", "length"), [(1, 1), (1, 37), (5, 5), (9, 30)])
def test_it_agrees_with_sdpa_causal_and_under_a_padding_mask(n_query: int, length: int) -> None:
    q, k, v = inputs(3, n_query, length)
    got, weights = grouped_attention(nn.Module(), q, k, v, None)
    assert weights is None and got.shape == (3, n_query, 6, 16)
    torch.testing.assert_close(got, reference(q, k, v, None), atol=1e-5, rtol=1e-5)
    # left padding as HFModel masks it: row 1 starts 3 keys later; a query always sees itself
    mask = torch.ones(3, 1, n_query, length, dtype=torch.bool).tril(length - n_query)
    mask[1, :, :, :3] = False
    mask[1, 0, range(n_query), range(length - n_query, length)] = True
    got, _ = grouped_attention(nn.Module(), q, k, v, mask)
    torch.testing.assert_close(got, reference(q, k, v, mask), atol=1e-5, rtol=1e-5)
    additive = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(grouped_attention(nn.Module(), q, k, v, additive)[0], got)


def test_a_long_prefill_runs_in_query_blocks_with_the_same_result(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    q, k, v = inputs(2, 40, 40, seed=1)
    whole, _ = grouped_attention(nn.Module(), q, k, v, None)
    monkeypatch.setattr(attention, "QUERY_BLOCK", 7)
    blocks, _ = grouped_attention(nn.Module(), q, k, v, None)
    torch.testing.assert_close(blocks, whole, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(blocks, reference(q, k, v, None), atol=1e-5, rtol=1e-5)


def test_bf16_inputs_are_computed_in_float32_and_returned_in_bf16() -> None:
    q, k, v = inputs(2, 1, 64, seed=2)
    got, _ = grouped_attention(nn.Module(), q.bfloat16(), k.bfloat16(), v.bfloat16(), None)
    assert got.dtype == torch.bfloat16
    exact = reference(q.bfloat16().float(), k.bfloat16().float(), v.bfloat16().float(), None)
    torch.testing.assert_close(got.float(), exact, atol=1e-2, rtol=1e-2)


def test_training_with_dropout_is_refused() -> None:
    q, k, v = inputs(1, 1, 4)
    module = nn.Module().train()
    with pytest.raises(ValueError, match="no dropout"):
        grouped_attention(module, q, k, v, None, dropout=0.1)


def test_a_model_on_cpu_runs_treedecs_attention(tiny_lm) -> None:  # type: ignore[no-untyped-def]
    assert tiny_lm.model.config._attn_implementation == ATTENTION
