"""Choosing the next token of every row of a batch: greedy, or sampled with temperature and top-p.

Each sampled row draws from its own ``torch.Generator`` (seeded from the call's seed and the row's
index, or from the row's own seed), so a row's text does not depend on what else shares its batch.

A sample is one uniform number per row read through the row's cumulative distribution (inverse
CDF), batched over the rows. Nucleus (top-p) sampling needs the tokens in probability order; a
full sort of a 152k-token vocabulary costs about 50 ms a row on one CPU thread, more than the
forward pass of the bundled model, so the nucleus is looked for among the ``NUCLEUS_CANDIDATES``
likeliest tokens (``topk``, a few ms for a batch) and only a batch with a row whose nucleus runs
past them is sorted in full. Both give the same nucleus. ``bench/sampling.py`` measures it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from search.model.lm import DecodeMode, GenerationParams, row_seed

NUCLEUS_CANDIDATES = 1024


def torch_seed(seed: int) -> int:
    """A seed torch accepts: any int in its range as is, others folded into 64 bits (a client may
    send any integer as a seed)."""
    return seed if -(2**63) <= seed < 2**64 else seed % 2**64


def row_generators(
    params: GenerationParams, n: int, device: torch.device, seeds: Sequence[int | None] | None = None
) -> list[torch.Generator] | None:
    """One generator per row for a sampled call (``None`` for greedy); row ``i`` is seeded with
    ``seeds[i]``, by default ``seed + SEED_STRIDE * i`` (a random seed when the call names none)."""
    if params.mode != DecodeMode.sample:
        return None
    chosen = list(seeds) if seeds is not None else [row_seed(params, i) for i in range(n)]
    gens = []
    for seed in chosen:  # a row without a seed (the call names none) gets a random one
        g = torch.Generator(device=device)
        g.manual_seed(torch_seed(seed) if seed is not None else int(torch.randint(0, 2**31 - 1, (1,)).item()))
        gens.append(g)
    return gens


def nucleus(probs: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The token ids of each row in probability order and their probabilities, zero past the
    smallest prefix holding ``top_p`` of the mass (the token that crosses it is kept)."""
    k = min(NUCLEUS_CANDIDATES, probs.shape[-1])
    weights, ids = probs.topk(k, dim=-1)
    mass = weights.cumsum(-1)
    if bool((mass[:, -1] < top_p).any()):
        weights, ids = probs.sort(dim=-1, descending=True)
        mass = weights.cumsum(-1)
    return ids, weights.masked_fill(mass - weights > top_p, 0.0)


def choose_tokens(
    logits: torch.Tensor,
    logp: torch.Tensor,
    params: GenerationParams,
    generators: list[torch.Generator] | None,
) -> torch.Tensor:
    """The next token of each row: the argmax of ``logp`` for greedy decoding, else a sample from
    ``softmax(logits / temperature)`` cut to its top-p nucleus, row ``i`` drawn with
    ``generators[i]``."""
    if params.mode != DecodeMode.sample:
        return logp.argmax(dim=-1)
    assert generators is not None and len(generators) == logits.shape[0]
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    ids: torch.Tensor | None = None
    weights = probs
    if params.top_p < 1.0:
        ids, weights = nucleus(probs, params.top_p)
    uniform = torch.stack([torch.rand((), generator=g, device=g.device) for g in generators])
    mass = weights.cumsum(-1)
    # right=True: the first position whose running mass exceeds the draw, so a token of zero
    # probability is never chosen, and a draw below the total always lands inside the row
    picks = torch.searchsorted(mass, (uniform.to(mass.dtype) * mass[:, -1]).unsqueeze(-1), right=True)
    picks = picks.clamp(max=mass.shape[-1] - 1)
    chosen = picks if ids is None else ids.gather(-1, picks)
    return chosen.squeeze(-1)
