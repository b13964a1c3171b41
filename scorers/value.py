"""Value estimates for prefixes (V-STAR): Monte-Carlo returns blended with a light learned head.

A prefix's *Monte-Carlo value* is the mean public-test reward of the complete programs found
below it (``mc_sum / visits``). Few rollouts pass through most prefixes, so the MC mean is noisy;
a *value head* predicts the value from cheap features of the prefix and is blended in::

    value = (visits * mc_mean + prior_strength * head(features)) / (visits + prior_strength)

so MC takes over as visits accumulate, and a prefix no rollout has finished under yet gets the
head's guess alone.

The head is ridge regression (closed form, numpy; the bias is not penalised) on the features
named in ``FEATURES``, all scaled to about [0, 1]:

- ``prefix_likelihood``: exp of the mean token log-prob of the prefix (1 for the empty prefix);
- ``entropy``: the next-token entropy at the prefix, in nats, divided by ``ENTROPY_SCALE``
  and clipped to 1;
- ``depth``: prefix tokens / the completion cap;
- ``cached_pass``: the public-test pass rate of the first (greedy) completion that went through
  the prefix, i.e. the cached completion's result;
- ``cached_compiles``: 1 if that completion compiled, else 0;
- ``continuation_likelihood``: exp of the mean token log-prob of that completion after the prefix.

It is refitted on (features, MC value) pairs of every visited prefix as evidence arrives (the
planner calls ``fit`` every few rollouts); until ``min_fit`` pairs exist the head predicts the mean
MC value seen so far (0.5 before any), and its output is clipped to [0, 1].

>>> vm = ValueModel(prior_strength=1.0)
>>> vm.fit([[0.9, 0.1, 0.2, 1.0, 1.0, 0.9]] * 3 + [[0.2, 0.9, 0.2, 0.0, 0.0, 0.3]] * 3, [1.0] * 3 + [0.0] * 3)
True
>>> round(vm.blend(mc_mean=1.0, visits=3, features=[0.9, 0.1, 0.2, 1.0, 1.0, 0.9]), 2)
0.98
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

FEATURES = (
    "prefix_likelihood",
    "entropy",
    "depth",
    "cached_pass",
    "cached_compiles",
    "continuation_likelihood",
)
ENTROPY_SCALE = 3.0


def node_features(
    prefix_logprobs: Sequence[float],
    entropy: float | None,
    depth_tokens: int,
    max_tokens: int,
    cached_pass: float | None,
    cached_compiles: bool | None,
    continuation_logprobs: Sequence[float],
) -> list[float]:
    """The feature vector of one prefix (order of ``FEATURES``)."""

    def lik(lps: Sequence[float]) -> float:
        return math.exp(sum(lps) / len(lps)) if lps else 1.0

    return [
        lik(prefix_logprobs),
        min(1.0, max(0.0, (entropy or 0.0) / ENTROPY_SCALE)),
        min(1.0, depth_tokens / max(1, max_tokens)),
        float(cached_pass) if cached_pass is not None else 0.0,
        1.0 if cached_compiles else 0.0,
        lik(continuation_logprobs),
    ]


class ValueModel:
    """Ridge value head plus the MC blend (module docstring)."""

    def __init__(self, ridge: float = 1.0, prior_strength: float = 1.0, min_fit: int = 4) -> None:
        if ridge < 0 or prior_strength < 0 or min_fit < 1:
            raise ValueError("ridge and prior_strength must be >= 0 and min_fit >= 1")
        self.ridge, self.prior_strength, self.min_fit = ridge, prior_strength, min_fit
        self.weights: np.ndarray | None = None
        self.fallback = 0.5
        self.fits = 0

    def fit(self, features: Sequence[Sequence[float]], targets: Sequence[float]) -> bool:
        """Refit on (features, MC value) pairs; returns whether a regression was fitted."""
        if len(targets):
            self.fallback = float(np.mean(targets))
        if len(targets) < self.min_fit:
            return False
        x = np.hstack([np.ones((len(targets), 1)), np.asarray(features, dtype=float)])
        y = np.asarray(targets, dtype=float)
        penalty = self.ridge * np.eye(x.shape[1])
        penalty[0, 0] = 0.0
        self.weights = np.linalg.solve(x.T @ x + penalty, x.T @ y)
        self.fits += 1
        return True

    def head(self, features: Sequence[float]) -> float:
        if self.weights is None:
            return self.fallback
        pred = float(self.weights[0] + np.dot(self.weights[1:], np.asarray(features, dtype=float)))
        return min(1.0, max(0.0, pred))

    def blend(self, mc_mean: float | None, visits: int, features: Sequence[float]) -> float:
        """MC mean weighted by its visit count against the head's prediction."""
        h = self.head(features)
        if mc_mean is None or visits <= 0:
            return h
        return (visits * mc_mean + self.prior_strength * h) / (visits + self.prior_strength)
