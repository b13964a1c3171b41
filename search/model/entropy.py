"""The entropy of a next-token distribution known only by its top-k log-probs.

A server that sends the top-k of each step but not the entropy of the full distribution (vLLM's
OpenAI routes) still lets AdaDec and the other entropy-driven planners run: with ``p_1..p_k`` the
top-k probabilities and ``R = 1 - sum(p)`` the tail mass, ``H = -sum p_i log p_i + H_tail``, where
every tail token has probability at most ``p_k``, so ``R log(1/p_k) <= H_tail <= R log((V-k)/R)``.
``topk_entropy`` takes the lower bound (exact when the tail mass is small, and never above the
truth); ``entropy_bounds`` gives both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from search.model.lm import TokenDist

TAIL_EPS = 1e-6  # tail mass below this is rounding noise of float32 log-probs


def entropy_bounds(logprobs: Sequence[float], vocab_size: int) -> tuple[float, float]:
    """Lower and upper bounds (nats) on the entropy of a distribution known by its top-k log-probs.

    >>> lo, hi = entropy_bounds([math.log(0.5), math.log(0.5)], 10)
    >>> round(lo, 6) == round(hi, 6) == round(math.log(2), 6)
    True
    """
    probs = [math.exp(lp) for lp in logprobs]
    head = -sum(p * lp for p, lp in zip(probs, logprobs, strict=True) if p > 0)
    tail = max(0.0, 1.0 - sum(probs))
    if tail <= TAIL_EPS or not probs:  # float noise of a full distribution: no tail
        return head, head
    p_min = min(probs)
    lower = head + tail * -math.log(min(p_min, 1.0))
    rest = max(1, vocab_size - len(probs))
    upper = head + tail * math.log(rest / tail)
    return lower, max(lower, upper)


def topk_entropy(logprobs: Sequence[float], vocab_size: int) -> float:
    """The entropy estimate used when the server sends none: the lower bound of ``entropy_bounds``."""
    return entropy_bounds(logprobs, vocab_size)[0]


def topk_dist(top: Mapping[int, float] | None, k: int, entropy: float | None, vocab_size: int) -> TokenDist:
    """The ``k`` most likely of ``top`` (token id -> log-prob) as a ``TokenDist``; its entropy is
    ``entropy`` when the server sent one, else the ``topk_entropy`` estimate.

    >>> d = topk_dist({5: math.log(0.25), 7: math.log(0.75)}, 1, None, 10)
    >>> d.token_ids, round(d.entropy, 3)
    ([7], 0.288)
    """
    items = sorted((top or {}).items(), key=lambda kv: -kv[1])[:k]
    ids, lps = [t for t, _ in items], [lp for _, lp in items]
    return TokenDist(ids, lps, float(entropy) if entropy is not None else topk_entropy(lps, vocab_size))
