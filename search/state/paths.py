"""Greedy paths: greedy decoding from a point on an earlier greedy path is the rest of that path.

Argmax decoding is deterministic, so a greedy rollout from prefix ``P`` that wrote ``g1..gn`` also
wrote the greedy continuation of every ``P + g1..gj``. ``GreedyPaths`` keeps one search's greedy
rollouts by every point along them, and ``serve`` answers a later greedy rollout from such a point
with the rollout the backend would return, read off the path instead of generated:

- the path's tokens, log-probs and step distributions from the point on (top-k cut to the request's
  ``record_top_k``; a path recorded with fewer, or none, cannot serve it);
- cut as the backend cuts (``search/model/hf.py``): after the first token at which the request's stops
  find a cut in the continuation's own text (``stop``), after its ``max_new_tokens`` (``length``),
  or where the path chose end-of-sequence (``eos``);
- where one path ends undecided, a path that starts there goes on (a greedy path extended by a
  later chunk).

``None`` when the paths do not decide it (e.g. a path that ended by a stop the continuation's own
text does not show, such as ``TopLevelStop`` right after the newline): the caller runs the model.
A caller that wants the rest of a *completion* (PG-TD: its program is cut where the stops find a
cut in the whole text) passes ``path_stops``, the key of its stops: a path that ended by a stop of
that same rule then also ends the continuation there (``stop``), as the path's own decode did.
``MeteredLM`` uses it for every greedy ``rollouts`` call (counted as ``Spend.path_hits`` and
``Spend.path_tokens``, not charged again to the budget: those tokens were generated once).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from search.limits.stops import StopCondition, first_stop
from search.model.lm import Rollout, TokenDist


@dataclass
class _Path:
    """One greedy rollout: ``seq`` is its prefix then its tokens (``seq[start:]``)."""

    seq: list[int]
    start: int
    logprobs: list[float]
    dists: list[TokenDist] | None  # one per step; one more than tokens when it chose end-of-sequence
    top_k: int
    eos: bool
    stopped_by: str | None  # the stops key, when it ended by a stop

    @property
    def tokens(self) -> int:
        return len(self.seq) - self.start


class GreedyPaths:
    """One search's greedy rollouts, by every point along them (module docstring)."""

    def __init__(self) -> None:
        self._paths: list[_Path] = []
        self._at: dict[int, list[tuple[int, int]]] = {}  # hash of a point -> (path, offset)

    def __len__(self) -> int:
        return len(self._paths)

    def add(self, prefix: Sequence[int], r: Rollout, top_k: int, stops_key: str = "") -> None:
        """Record a greedy rollout from ``prefix`` (with ``record_top_k=top_k``, stopping by the
        stops of key ``stops_key``)."""
        seq = [*prefix, *r.token_ids]
        dists = list(r.step_dists) if r.step_dists is not None and top_k else None
        eos = r.finish_reason == "eos"
        stopped = stops_key if r.finish_reason == "stop" else None
        idx = len(self._paths)
        self._paths.append(_Path(seq, len(prefix), list(r.logprobs), dists, top_k, eos, stopped))
        for n in range(len(prefix), len(seq) + 1):
            self._at.setdefault(hash(tuple(seq[:n])), []).append((idx, n - len(prefix)))

    def _find(self, point: list[int], top_k: int) -> tuple[_Path, int] | None:
        """The first recorded path through ``point`` that says something after it."""
        for idx, j in self._at.get(hash(tuple(point)), ()):
            path = self._paths[idx]
            if top_k > path.top_k or path.seq[: len(point)] != point:
                continue
            if j < path.tokens or path.eos:
                return path, j
        return None

    def serve(
        self,
        prefix: Sequence[int],
        max_new_tokens: int,
        top_k: int,
        stops: Sequence[StopCondition],
        decode: Callable[[Sequence[int]], str],
        path_stops: str | None = None,
    ) -> Rollout | None:
        """The greedy rollout from ``prefix`` read off the paths, or None when they do not decide it."""
        point = list(prefix)
        toks: list[int] = []
        lps: list[float] = []
        dists: list[TokenDist] = []

        def done(text: str, reason: str) -> Rollout:
            return Rollout(toks, lps, text, reason, dists if top_k else None)

        while True:
            found = self._find(point, top_k)
            if found is None:
                return None
            path, j = found
            for i in range(path.start + j, len(path.seq)):
                toks.append(path.seq[i])
                lps.append(path.logprobs[i - path.start])
                if top_k and path.dists is not None:
                    dists.append(_top(path.dists[i - path.start], top_k))
                text = decode(toks)
                cut = first_stop(text, stops)
                if cut is not None:
                    return done(text[:cut], "stop")
                if len(toks) >= max_new_tokens:
                    return done(text, "length")
            if path.eos:
                if top_k and path.dists is not None:
                    dists.append(_top(path.dists[path.tokens], top_k))
                text = decode(toks)
                cut = first_stop(text, stops)
                return done(text if cut is None else text[:cut], "eos" if cut is None else "stop")
            if path_stops is not None and path.stopped_by == path_stops and j < path.tokens:
                return done(decode(toks), "stop")
            point = [*prefix, *toks]


def _top(dist: TokenDist, k: int) -> TokenDist:
    if len(dist.token_ids) <= k:
        return dist
    return TokenDist(dist.token_ids[:k], dist.logprobs[:k], dist.entropy)
