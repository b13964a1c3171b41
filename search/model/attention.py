"""Attention on CPU: the query heads that share a key/value head multiplied together, in float32.

Measured on this machine (one thread, the bundled 0.5B model: 14 query heads over 2 key/value
heads, 64 dims, a batch of 4 one-token queries over 300 cached positions, a boolean mask as
``HFModel`` passes one), torch's ``scaled_dot_product_attention`` spends 9.3 ms a layer on bf16
inputs, 1.7 ms on float32 ones, and this module 0.4 ms: the flash kernel is written for long
query blocks, and in bf16 it converts every block. A decode step has one query per row, so its
attention is a small matrix product per key/value head, which float32 GEMM does fast. Grouping
the query heads of a key/value head (Qwen2 has 7 per head) reads each cached key once instead of
repeating the cache 7 times as ``repeat_kv`` does.

Scores, softmax and the weighted sum are float32; the output is cast back to the activations'
dtype, and the KV cache stays in it. Queries are taken in blocks of ``QUERY_BLOCK`` rows, so a
long prefill does not hold a full score matrix at once; each query row's result is computed over
all keys, whichever block it is in. ``HFModel`` selects this on CPU (``ATTENTION``); CUDA keeps
``sdpa``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface

ATTENTION = "treedec-cpu"
QUERY_BLOCK = 256  # query positions per block: 7 heads x 256 x 4096 keys x 4 bytes = 29 MB a row


def grouped_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: ``query`` [B, H, Q, D], ``key``/``value`` [B, KH, L, D],
    ``attention_mask`` boolean (True: attend) or additive, [B, 1, Q, >=L], or None (causal);
    returns [B, Q, H, D] in ``query``'s dtype."""
    if dropout and module.training:
        raise ValueError("treedec's CPU attention is for inference: it has no dropout")
    batch, heads, n_query, dim = query.shape
    kv_heads, length = key.shape[1], key.shape[2]
    group = heads // kv_heads
    scale = scaling if scaling is not None else dim**-0.5
    keys_t = key.float().transpose(-1, -2)  # [B, KH, D, L]
    values = value.float()
    queries = query.float().view(batch, kv_heads, group, n_query, dim)
    mask = _mask(attention_mask, n_query, length, query.device)
    out = torch.empty(batch, kv_heads, group, n_query, dim, dtype=torch.float32, device=query.device)
    for start in range(0, n_query, QUERY_BLOCK):
        stop = min(start + QUERY_BLOCK, n_query)
        q = queries[:, :, :, start:stop].reshape(batch, kv_heads, group * (stop - start), dim)
        scores = torch.matmul(q, keys_t).mul_(scale).view(batch, kv_heads, group, stop - start, length)
        if mask is not None:
            block = mask[:, :, None, start:stop]
            scores = (
                scores.masked_fill_(~block, float("-inf")) if block.dtype == torch.bool else scores + block
            )
        weights = torch.softmax(scores, dim=-1).view(batch, kv_heads, group * (stop - start), length)
        out[:, :, :, start:stop] = torch.matmul(weights, values).view(
            batch, kv_heads, group, stop - start, dim
        )
    return out.view(batch, heads, n_query, dim).transpose(1, 2).contiguous().to(query.dtype), None


def _mask(
    attention_mask: torch.Tensor | None, n_query: int, length: int, device: torch.device
) -> torch.Tensor | None:
    """The mask as [B or 1, 1, Q, L]: the given one cut to the keys, or causal when none is given
    (the last ``n_query`` keys are the queries' own positions)."""
    if attention_mask is not None:
        mask = attention_mask[..., :length]
        return mask if mask.dtype == torch.bool else mask.float()
    if n_query == 1:
        return None
    causal = torch.ones(n_query, length, dtype=torch.bool, device=device).tril(length - n_query)
    return causal[None, None]


AttentionInterface.register(ATTENTION, grouped_attention)
