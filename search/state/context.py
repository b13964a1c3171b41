"""What a planner is handed (``SearchContext``) and what it hands back (``SearchResult``).

``MeteredLM`` wraps any ``LanguageModel``: it answers a greedy rollout from a point on one of the
search's earlier greedy rollouts by reading the rest of that path (``search/state/paths.py``; counted as
``path_hits``/``path_tokens``, no forward pass), asks the partial-state cache next (next-token
distributions by prefix, deterministic rollouts by prefix and settings), charges every model
call to the search's ``Meter``, and, when a rollout records its per-step top-k, stores those
distributions along the generated path (PG-TD's tree cache) so later expansions need no forward
pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from search.cache import codec
from search.cache.store import NS_NEXT_TOKEN, NS_ROLLOUT, Cache, MemoryCache, cache_key
from search.limits.budget import Meter, Spend
from search.limits.stops import GuardStop, StopCondition, StopStrings, first_stop, stops_key
from search.model.lm import (
    CallStats,
    DecodeMode,
    GenerationParams,
    LanguageModel,
    ModelWrapper,
    Rollout,
    RowSettings,
    TokenDist,
)
from search.problems import prompting
from search.problems.problem import Problem
from search.problems.prompt_styles import RenderedStyle
from search.state.paths import GreedyPaths

log = logging.getLogger("treedec.search")

EventSink = Callable[[dict[str, Any]], None]
# The problem in another prompt style, as whoever built the context renders it (the engine, with
# the model's measured style for ``auto``): planners that decode in several styles ask it.
Renderer = Callable[[Problem, str], Problem]
T = TypeVar("T")

# Finish reasons of rollouts cut short by their caller's cancel or deadline (search/model/batching.py):
# never cached, since the same prefix and settings would otherwise go on further.
INTERRUPTED = frozenset({"cancelled", "max_seconds"})


class MeteredLM(ModelWrapper):
    """A LanguageModel view for one search: its greedy paths and the cache first, every call
    charged to the meter (``reuse_paths=False`` turns the greedy-path reuse off)."""

    def __init__(self, lm: LanguageModel, cache: Cache, meter: Meter, reuse_paths: bool = True) -> None:
        super().__init__(lm)
        self.cache = cache
        self.meter = meter
        self.paths = GreedyPaths()  # this search's greedy rollouts (search/state/paths.py)
        self.reuse_paths = reuse_paths
        self._model_key = lm.identity.key()

    def _charge(self, stats: CallStats, rollouts: int = 0) -> None:
        self.meter.charge(
            forward_passes=stats.forward_passes,
            processed_tokens=stats.processed_tokens,
            generated_tokens=stats.generated_tokens,
            rollouts=rollouts,
        )

    def _cache_get(self, namespace: str, keys: list[str]) -> list[bytes | None]:
        before = (self.cache.stats.hits, self.cache.stats.misses)
        values = self.cache.get_many(namespace, keys)
        hits = sum(v is not None for v in values)
        self.meter.charge(cache_hits=hits, cache_misses=len(values) - hits)
        del before
        return values

    def _ntd_key(self, prefix: Sequence[int], k: int) -> str:
        return cache_key(self._model_key, "ntd", k, tuple(prefix))

    def next_token_dists(
        self, prefixes: Sequence[Sequence[int]], k: int, stats: CallStats | None = None
    ) -> list[TokenDist]:
        keys = [self._ntd_key(p, k) for p in prefixes]
        cached = self._cache_get(NS_NEXT_TOKEN, keys)
        out: list[TokenDist | None] = []
        for raw in cached:
            dist = None
            if raw is not None:
                try:
                    ids, lps, h = codec.decode_next_token(raw)
                    dist = TokenDist(ids, lps, h)
                except codec.CodecError:
                    dist = None
            out.append(dist)
        missing = [i for i, d in enumerate(out) if d is None]
        if missing:
            call = CallStats()
            fresh = self.inner.next_token_dists([prefixes[i] for i in missing], k, call)
            self._charge(call)
            if stats is not None:
                stats.add(call)
            items = {}
            for i, dist in zip(missing, fresh, strict=True):
                out[i] = dist
                items[keys[i]] = codec.encode_next_token(dist.token_ids, dist.logprobs, dist.entropy)
            self.cache.set_many(NS_NEXT_TOKEN, items)
        return [d for d in out if d is not None]

    def _rollout_key(
        self, prefix: Sequence[int], params: GenerationParams, stops: Sequence[StopCondition]
    ) -> str:
        return cache_key(self._model_key, "roll", params.cache_part(), stops_key(stops), tuple(prefix))

    def rollouts(
        self,
        prefixes: Sequence[Sequence[int]],
        params: GenerationParams,
        stops: Sequence[StopCondition] = (),
        stats: CallStats | None = None,
        row_stops: Sequence[Sequence[StopCondition]] | None = None,
        *,
        rows: RowSettings | None = None,
        row_max_new_tokens: Sequence[int] | None = None,
        sources: list[str] | None = None,
        path_stops: bool = False,
    ) -> list[Rollout]:
        """The protocol's ``rollouts``, from this search's greedy paths first, then the rollout
        cache, then the model. ``row_max_new_tokens`` holds each row to its own length (the model
        call runs to the longest row not served otherwise; a sampled row stops at its own length);
        ``rows`` gives each row its own seed and length; ``sources``, when given, gets each row's
        origin appended: ``path``, ``cache`` or ``model``; ``path_stops`` lets a path's own stop
        end a continuation read off it (the rest of a completion: see ``search/state/paths.py``)."""
        n = len(prefixes)
        # a row's stops are the call's and its own (a row is cached as if all were the call's)
        ends = [[*stops, *extra] for extra in row_stops] if row_stops is not None else None
        if rows is None:
            rows = RowSettings.of(params, n, row_max_new_tokens)
        caps = list(rows.max_new_tokens)
        out: list[Rollout | None] = [None] * n
        origin = ["model"] * n
        greedy = params.mode == DecodeMode.greedy
        if greedy and self.reuse_paths and len(self.paths):
            self._serve_from_paths(prefixes, params, ends, stops, caps, out, origin, path_stops)
        todo = [i for i in range(n) if out[i] is None]
        if todo:
            params = params.model_copy(update={"max_new_tokens": max(caps[i] for i in todo)})
            params = self._clamp(params, len(todo))
            # A deterministic row is cached under the call's settings, so it runs to the call's
            # length; a sampled one (never cached) stops at its own.
            own = [min(caps[i], params.max_new_tokens) for i in range(n)]
            settings = RowSettings(
                rows.seeds, tuple(own) if not params.deterministic else (params.max_new_tokens,) * n
            )
            self._generate(prefixes, params, stops, stats, row_stops, ends, todo, out, origin, settings)
            for i in todo:
                r = out[i]
                assert r is not None
                if greedy and r.finish_reason not in INTERRUPTED:
                    row = ends[i] if ends else stops
                    self.paths.add(
                        prefixes[i], r, params.record_top_k, stops_key(self._all_stops(row, params))
                    )
                if len(r.token_ids) > caps[i]:  # a longer row of the call set its length
                    out[i] = _truncate(r, caps[i], self.inner.decode)
        if sources is not None:
            sources.extend(origin)
        return [r for r in out if r is not None]

    def path_rollout(
        self,
        prefix: Sequence[int],
        params: GenerationParams,
        stops: Sequence[StopCondition] = (),
    ) -> Rollout | None:
        """The greedy rollout of ``prefix`` read off this search's earlier greedy paths, or None
        when they do not decide it. Nothing is charged: a ``rollouts`` call for it is served from
        the paths and counted there (a planner peeks to decide, e.g. whether to prune)."""
        if params.mode != DecodeMode.greedy or not self.reuse_paths:
            return None
        return self.paths.serve(
            prefix,
            params.max_new_tokens,
            params.record_top_k,
            self._all_stops(stops, params),
            self.inner.decode,
        )

    def _serve_from_paths(
        self,
        prefixes: Sequence[Sequence[int]],
        params: GenerationParams,
        rows: list[list[StopCondition]] | None,
        stops: Sequence[StopCondition],
        caps: list[int],
        out: list[Rollout | None],
        origin: list[str],
        path_stops: bool,
    ) -> None:
        served = 0
        tokens = 0
        for i, prefix in enumerate(prefixes):
            row = self._all_stops(rows[i] if rows else stops, params)
            key = stops_key(row) if path_stops else None
            r = self.paths.serve(prefix, caps[i], params.record_top_k, row, self.inner.decode, key)
            if r is not None:
                out[i], origin[i] = r, "path"
                served += 1
                tokens += len(r.token_ids)
        if served:
            self.meter.charge(path_hits=served, path_tokens=tokens)

    @staticmethod
    def _all_stops(stops: Sequence[StopCondition], params: GenerationParams) -> list[StopCondition]:
        return [*stops, StopStrings(params.stop)] if params.stop else list(stops)

    def _generate(
        self,
        prefixes: Sequence[Sequence[int]],
        params: GenerationParams,
        stops: Sequence[StopCondition],
        stats: CallStats | None,
        row_stops: Sequence[Sequence[StopCondition]] | None,
        rows: list[list[StopCondition]] | None,
        todo: list[int],
        out: list[Rollout | None],
        origin: list[str],
        settings: RowSettings,
    ) -> None:
        """Rows ``todo`` from the rollout cache (deterministic settings), else from the model."""
        keys: dict[int, str] = {}
        if params.deterministic:
            keys = {i: self._rollout_key(prefixes[i], params, rows[i] if rows else stops) for i in todo}
            raws = self._cache_get(NS_ROLLOUT, [keys[i] for i in todo])
            for i, raw in zip(todo, raws, strict=True):
                if raw is not None:
                    out[i] = self._decode_rollout(raw, params, rows[i] if rows else stops)
                    if out[i] is not None:
                        origin[i] = "cache"
            served = [out[i] for i in todo if out[i] is not None]
            if served:
                self.meter.charge(cached_tokens=sum(len(r.token_ids) for r in served if r is not None))
        missing = [i for i in todo if out[i] is None]
        if not missing:
            return
        call = CallStats()
        guard = self._deadline_stop()
        # the guard is this search's own: handed down with each of its rows, never shared
        own = [list(row_stops[i]) if row_stops is not None else [] for i in missing]
        if guard is not None:
            own = [[*r, guard] for r in own]
        fresh = self.inner.rollouts(
            [prefixes[i] for i in missing],
            params,
            stops,
            call,
            row_stops=own if any(own) else None,
            rows=settings.pick(missing),
        )
        if guard is not None and guard.fired:
            for r in fresh:
                r.finish_reason = guard.fired
        self._charge(call, rollouts=len(missing))
        if stats is not None:
            stats.add(call)
        roll_items: dict[str, bytes] = {}
        for i, r in zip(missing, fresh, strict=True):
            out[i] = r
            if params.deterministic and r.finish_reason not in INTERRUPTED:
                roll_items[keys[i]] = codec.encode_rollout(
                    r.token_ids,
                    r.logprobs,
                    r.finish_reason,
                    [(d.token_ids, d.logprobs, d.entropy) for d in r.step_dists] if r.step_dists else None,
                )
        if roll_items:
            self.cache.set_many(NS_ROLLOUT, roll_items)
        if params.record_top_k:
            self._store_path_dists([prefixes[i] for i in missing], fresh, params.record_top_k)

    def _store_path_dists(
        self, prefixes: Sequence[Sequence[int]], rollouts: Sequence[Rollout], k: int
    ) -> None:
        """Tree cache: every prefix along a rollout's path keeps its top-k."""
        items: dict[str, bytes] = {}
        for prefix, r in zip(prefixes, rollouts, strict=True):
            if not r.step_dists:
                continue
            path = list(prefix)
            for j, dist in enumerate(r.step_dists):
                items[self._ntd_key(path, k)] = codec.encode_next_token(
                    dist.token_ids, dist.logprobs, dist.entropy
                )
                if j < len(r.token_ids):
                    path.append(r.token_ids[j])
        if items:
            self.cache.set_many(NS_NEXT_TOKEN, items)

    def _decode_rollout(
        self, raw: bytes, params: GenerationParams, stops: Sequence[StopCondition]
    ) -> Rollout | None:
        try:
            ids, lps, reason, dists = codec.decode_rollout(raw)
        except codec.CodecError:
            return None
        text = self.inner.decode(ids)
        cut = first_stop(text, self._all_stops(stops, params))
        step_dists = [TokenDist(a, b, c) for a, b, c in dists] if dists else None
        return Rollout(ids, lps, text if cut is None else text[:cut], reason, step_dists)

    def _clamp(self, params: GenerationParams, n: int) -> GenerationParams:
        """Never let one call overshoot the token or forward-pass budget: a batched rollout of
        ``m`` new tokens a row costs ``n * m`` tokens and at most ``m`` forward passes."""
        cap = params.max_new_tokens
        remaining = self.meter.remaining_tokens()
        if remaining is not None and remaining < cap * n:
            cap = max(1, remaining // max(1, n))
        passes = self.meter.remaining_forward_passes()
        if passes is not None and passes < cap:
            cap = max(1, passes)
        if cap == params.max_new_tokens:
            return params
        return params.model_copy(update={"max_new_tokens": cap})

    def _deadline_stop(self) -> GuardStop | None:
        """A stop condition that ends the rows of a call once the budget's ``max_seconds`` passes
        (or the search is cancelled), so one long call cannot overrun the wall-time budget."""
        if self.meter.budget.max_seconds is None:
            return None
        return GuardStop(self.meter.guard())

    def position_stats(
        self, tokens: Sequence[int], start: int, stats: CallStats | None = None
    ) -> list[tuple[float, bool]]:
        return self._charged(lambda call: self.inner.position_stats(tokens, start, call), stats)

    def continuation_logprobs(
        self,
        prefix: Sequence[int],
        continuations: Sequence[Sequence[int]],
        stats: CallStats | None = None,
    ) -> list[list[float]]:
        return self._charged(
            lambda call: self.inner.continuation_logprobs(prefix, continuations, call), stats
        )

    def _charged(self, work: Callable[[CallStats], T], stats: CallStats | None) -> T:
        """``work`` on the inner model with a call's own ``CallStats``, charged to the meter (and
        added to the caller's ``stats``)."""
        call = CallStats()
        out = work(call)
        self._charge(call)
        if stats is not None:
            stats.add(call)
        return out


def _truncate(r: Rollout, n: int, decode: Callable[[Sequence[int]], str]) -> Rollout:
    """The first ``n`` tokens of a rollout, ended by length."""
    dists = r.step_dists[:n] if r.step_dists is not None else None
    return Rollout(r.token_ids[:n], r.logprobs[:n], decode(r.token_ids[:n]), "length", dists)


def _noop(event: dict[str, Any]) -> None:
    return None


@dataclass
class SearchContext:
    """Everything a planner may use, through protocols only."""

    lm: MeteredLM
    meter: Meter
    cache: Cache
    scorer: Any = None  # scorers.tests.TestScorer (public-test reward), when a sandbox is configured
    events: EventSink = _noop
    options: dict[str, Any] = field(default_factory=dict)
    renderer: Renderer | None = None  # None: rendered against ``lm`` alone (no measured default)

    @classmethod
    def create(
        cls,
        lm: LanguageModel,
        *,
        meter: Meter | None = None,
        cache: Cache | None = None,
        scorer: Any = None,
        events: EventSink | None = None,
        reuse_paths: bool = True,
        renderer: Renderer | None = None,
    ) -> SearchContext:
        meter = meter or Meter()
        cache = cache if cache is not None else MemoryCache()
        metered = MeteredLM(lm, cache, meter, reuse_paths)
        return cls(metered, meter, cache, scorer, events or _noop, renderer=renderer)

    def render(self, problem: Problem, style: str) -> Problem:
        """``problem`` in the prompt style ``style``, rendered by the context's owner (see
        ``search/problems/prompting.py``); an unusable style raises ``PromptStyleError``."""
        if self.renderer is not None:
            return self.renderer(problem, style)
        return prompting.render(problem, style, self.lm)

    def emit(self, kind: str, **data: Any) -> None:
        spend = self.meter.spend
        self.events(
            {
                "event": kind,
                **data,
                "spend": {
                    "tokens": spend.generated_tokens,
                    "forward_passes": spend.forward_passes,
                    "executions": spend.executions,
                    "seconds": round(self.meter.elapsed(), 3),
                },
            }
        )

    def count(self, name: str, amount: float = 1) -> None:
        """Add to a planner-specific spend counter (``spend.extra[name]``); thread-safe."""
        self.meter.count(name, amount)

    def reward(self, problem: Problem, completions: Sequence[str]) -> list[Any]:
        """Public-test rewards of completions, charged to the budget (cache hits are free)."""
        if self.scorer is None:
            raise RuntimeError("this planner needs a sandbox to run public tests; none is configured")
        rewards = list(self.scorer.score_many(problem, list(completions)))
        if not problem.runs_program:
            return rewards  # prose is never run: nothing to charge
        executed = sum(0 if getattr(r, "cached", False) else 1 for r in rewards)
        self.meter.charge(
            executions=executed, cached_executions=len(rewards) - executed, scorer_calls=len(rewards)
        )
        return rewards


@dataclass
class Candidate:
    """A complete answer a planner found."""

    completion: str
    token_ids: list[int]
    logprob: float
    reward: float | None = None
    public_passed: int | None = None
    public_total: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "completion": self.completion,
            "tokens": len(self.token_ids),
            "logprob": round(self.logprob, 4),
            "reward": self.reward,
            "public_passed": self.public_passed,
            "public_total": self.public_total,
            **({"meta": self.meta} if self.meta else {}),
        }


Signal = Literal["none", "agreement", "weighted-agreement", "rollout-value", "prm"]
"""What steered a search on an answer problem: nothing (plain decoding, the model's own choice),
agreement of sampled answers (a plain or a weighted vote), the rollout value of partial solutions,
or a process reward model."""


class AnswerChoice(BaseModel):
    """An answer problem's final answer as the search chose it, and the vote share of that answer
    among every answer the search drew (its ``confidence``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    answer: str | None = Field(description="the chosen final answer as written; null: none was found")
    confidence: float = Field(ge=0, le=1, description="the chosen answer's share of the votes")
    votes: float = Field(ge=0, description="the votes for the chosen answer (weights, for a weighted vote)")
    samples: float = Field(ge=0, description="every vote cast, answers or not (weights summed)")
    answers: int = Field(ge=0, description="distinct final answers drawn")
    signal: Signal = Field(description="what steered the search; none: it had no signal")


@dataclass
class SearchResult:
    planner: str
    problem_id: str
    best: Candidate | None
    candidates: list[Candidate]
    spend: Spend
    stop_reason: str
    tree: dict[str, Any] | None = None
    # the prompt style the completions are in, when the search chose its own (``styles``,
    # ``cascade``: ``completion``, text that continues the prompt); None: the problem's style
    answer_style: RenderedStyle | None = None
    # why the search had nothing to steer by (no public tests...); None: it had a signal or needs none
    no_signal: str | None = None
    choice: AnswerChoice | None = None  # an answer problem's chosen answer and its vote share

    def to_dict(self, include_tree: bool = True) -> dict[str, Any]:
        return {
            "planner": self.planner,
            "problem_id": self.problem_id,
            "completion": self.best.completion if self.best else None,
            "best": self.best.to_dict() if self.best else None,
            "candidates": [c.to_dict() for c in self.candidates],
            "spend": self.spend.to_dict(),
            "stop_reason": self.stop_reason,
            **({"choice": self.choice.model_dump()} if self.choice is not None else {}),
            **({"tree": self.tree} if include_tree and self.tree is not None else {}),
        }


def best_candidate(candidates: Sequence[Candidate]) -> Candidate | None:
    """Highest reward, ties broken by likelihood (mean log-prob per token)."""
    if not candidates:
        return None
    return max(
        candidates,
        key=lambda c: (
            c.reward if c.reward is not None else float("-inf"),
            c.logprob / max(1, len(c.token_ids)),
        ),
    )


def stops_for(problem: Problem) -> list[StopCondition]:
    """Where a continuation of this problem ends (its prompt style decides; see
    search/problems/prompting.py)."""
    return prompting.stops_for(problem)
