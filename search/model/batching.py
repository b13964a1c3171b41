"""``BatchingLM``: concurrent searches share forward passes.

One model serves every request of the server. Alone, each search would run its own batch of one
row, and concurrent searches would take turns on the model lock. ``BatchingLM`` wraps any
``LanguageModel`` (in practice ``HFModel``) and implements the same protocol; a dispatcher thread
merges the calls that arrive together into one batched call of the inner model:

- ``next_token_dists`` calls merge whatever their ``k`` (one call with the largest ``k``; each
  caller gets its own top-``k``, which is a prefix of the larger one);
- greedy ``rollouts`` calls all merge, whatever their lengths, stops and recorded top-k (rows
  leave the batch as they finish, so short answers do not wait for long ones). A caller's rows
  keep what is theirs (``merge_key``): their lengths (``RowSettings``), their stops (the call's
  shared ``stops`` and ``params.stop`` become its rows' ``row_stops``) and the top-k they record
  (the batch records the largest asked for; each caller gets its own prefix of it). So the greedy
  calls of different planners and styles (PG-TD's rollouts, a greedy baseline's, AdaDec's chunks)
  share forward passes;
- sampled ``rollouts`` calls of the same temperature and top-p merge the same way (their seeds may
  differ) only with ``merge_samples=True``: each row keeps its own seed and draws from its own
  generator, yet a batch of another shape differs in the last float bits, and where two tokens
  are nearly tied that can move a draw. Off by default, so a seeded request to the server gets
  the same sample whatever else is running; ``bench/quality.py --parallel`` turns it on (its
  rows say they ran batched);
- beam rollouts and ``continuation_logprobs`` run alone.

Calls are merged when they are pending at the same time: while the model runs one batch, the
next callers queue and go together into the next. When more than one caller thread was seen in
the last second or more than one request is open (``request_guard``), the dispatcher also waits
up to ``window_ms`` after the first pending call for the others to join (and stops waiting as
soon as all of them have): a burst of new requests then starts as one batch, not as one + the rest.

Per-caller accounting (``CallStats``) of a merged call: ``generated_tokens`` is exact per caller
(the tokens of its own rows); ``forward_passes`` counts the passes the caller's rows took part in
(what the caller would have spent alone, so budgets do not depend on other traffic);
``processed_tokens`` and ``reused_tokens`` are split in proportion to the caller's row lengths.
Process-wide totals (``counters``) stay the inner model's real counts.

Each caller may carry a ``Guard`` (``request_guard(cancel, deadline)``, a context variable set by
the server's job thread): its rows stop at the next decoding step once it is cancelled or past
its deadline, with finish reason ``"cancelled"`` / ``"max_seconds"`` (never cached: see
``search.state.context.INTERRUPTED``), while the other rows of the batch go on.

>>> lm = BatchingLM(make_tiny_lm())  # doctest: +SKIP
>>> lm.rollouts([lm.encode("def f():")], GenerationParams(max_new_tokens=8))  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from search.limits.budget import BudgetExhausted
from search.limits.stops import Guard, GuardStop, StopCondition, StopStrings
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

log = logging.getLogger("treedec.batching")


# ----- per-request guard -----------------------------------------------------------------------

_current_guard: ContextVar[Guard | None] = ContextVar("treedec_guard", default=None)
_open_requests = [0]  # requests inside request_guard now: callers the dispatcher may wait for
_open_lock = threading.Lock()


@contextmanager
def request_guard(
    cancel: threading.Event | None = None, deadline: float | None = None, guard: Guard | None = None
) -> Iterator[Guard]:
    """Model calls made in this block (this thread) stop at their next step once ``cancel`` is
    set or ``time.monotonic()`` passes ``deadline`` (or ``guard`` trips: the Engine hands down its
    search's one guard, ``Meter.guard()``). The block also counts as an open request, so the
    batching dispatcher waits (up to its window) for that request's calls to join a batch."""
    guard = guard if guard is not None else Guard(cancel, deadline)
    token = _current_guard.set(guard)
    with _open_lock:
        _open_requests[0] += 1
    try:
        yield guard
    finally:
        with _open_lock:
            _open_requests[0] -= 1
        _current_guard.reset(token)


# ----- pending calls ---------------------------------------------------------------------------


@dataclass
class _Call:
    kind: str  # "ntd" | "roll" | "solo"
    key: Hashable
    prefixes: list[list[int]]
    thread: int
    k: int = 0
    params: GenerationParams | None = None
    row_stops: list[list[StopCondition]] | None = None  # the caller's stops, one list per row
    rows: RowSettings | None = None  # the caller's rows' seeds and lengths
    guard: Guard | None = None
    thunk: Callable[[CallStats], Any] | None = None
    arrived: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    started: bool = False
    result: Any = None
    error: BaseException | None = None
    stats: CallStats = field(default_factory=CallStats)


@dataclass
class BatchingStats:
    """How much merging happened (for benchmarks and /metrics)."""

    batches: int = 0
    calls: int = 0
    merged_calls: int = 0  # calls that shared their batch with another caller
    rows: int = 0


class BatchingLM(ModelWrapper):
    """A ``LanguageModel`` that merges concurrent callers' calls into batched inner calls."""

    def __init__(
        self, inner: LanguageModel, window_ms: float = 10.0, max_rows: int = 32, merge_samples: bool = False
    ) -> None:
        if window_ms < 0 or max_rows < 1:
            raise ValueError("window_ms must be >= 0 and max_rows >= 1")
        super().__init__(inner)
        self.merge_samples = merge_samples
        self.window = window_ms / 1000.0
        self.max_rows = max_rows
        self.batching = BatchingStats()
        self._pending: list[_Call] = []
        self._cond = threading.Condition()
        self._seen: dict[int, float] = {}
        self._ids = itertools.count()
        self._thread = threading.Thread(target=self._loop, name="treedec-batching", daemon=True)
        self._thread.start()

    def __getattr__(self, name: str) -> Any:  # tokenizer, kv, lock... of the inner model
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    # ----- protocol (the text edges are the inner model's: ModelWrapper) ------------------------
    def next_token_dists(
        self, prefixes: Sequence[Sequence[int]], k: int, stats: CallStats | None = None
    ) -> list[TokenDist]:
        call = _Call(
            "ntd",
            ("ntd",),
            [list(p) for p in prefixes],
            threading.get_ident(),
            k=k,
            guard=_current_guard.get(),
        )
        return self._submit(call, stats)  # type: ignore[no-any-return]

    def rollouts(
        self,
        prefixes: Sequence[Sequence[int]],
        params: GenerationParams,
        stops: Sequence[StopCondition] = (),
        stats: CallStats | None = None,
        row_stops: Sequence[Sequence[StopCondition]] | None = None,
        *,
        rows: RowSettings | None = None,
    ) -> list[Rollout]:
        mergeable = params.mode == DecodeMode.greedy or (
            params.mode == DecodeMode.sample and self.merge_samples
        )
        key: Hashable = self.rollout_key(params, stops) if mergeable else ("solo", next(self._ids))
        # The call's stops (its params.stop too) become its rows' own, so that callers with other
        # stops (other styles, A*'s step ends, AdaDec's in-context stops) share a batch.
        shared_stops = [*stops, StopStrings(params.stop)] if params.stop else list(stops)
        call = _Call(
            "roll",
            key,
            [list(p) for p in prefixes],
            threading.get_ident(),
            params=params,
            row_stops=[
                shared_stops + (list(row_stops[i]) if row_stops is not None else [])
                for i in range(len(prefixes))
            ],
            rows=rows if rows is not None else RowSettings.of(params, len(prefixes)),
            guard=_current_guard.get(),
        )
        return self._submit(call, stats)  # type: ignore[no-any-return]

    def rollout_key(self, params: GenerationParams, stops: Sequence[StopCondition]) -> Hashable:
        """Rollout calls with equal keys may share a batch (``merge_key``; a call's ``stops`` are
        its rows' own, so they do not part it from others)."""
        return ("roll", merge_key(params))

    def continuation_logprobs(
        self,
        prefix: Sequence[int],
        continuations: Sequence[Sequence[int]],
        stats: CallStats | None = None,
    ) -> list[list[float]]:
        call = _Call(
            "solo",
            ("solo", next(self._ids)),
            [list(prefix)],
            threading.get_ident(),
            thunk=lambda s: self.inner.continuation_logprobs(prefix, continuations, s),
        )
        return self._submit(call, stats)  # type: ignore[no-any-return]

    def position_stats(
        self, tokens: Sequence[int], start: int, stats: CallStats | None = None
    ) -> list[tuple[float, bool]]:
        return self.inner.position_stats(tokens, start, stats)

    # ----- caller side -------------------------------------------------------------------------
    def _submit(self, call: _Call, stats: CallStats | None) -> Any:
        if not call.prefixes and call.kind != "solo":
            return []
        with self._cond:
            self._seen[call.thread] = call.arrived
            self._pending.append(call)
            self._cond.notify_all()
        while not call.done.wait(0.05):
            reason = call.guard.reason() if call.guard is not None else None
            if reason is not None and self._withdraw(call):
                return self._interrupted(call, reason)
        if call.error is not None:
            raise call.error
        if stats is not None:
            stats.add(call.stats)
        return call.result

    def _withdraw(self, call: _Call) -> bool:
        with self._cond:
            if call.started:
                return False
            self._pending.remove(call)
            return True

    def _interrupted(self, call: _Call, reason: str) -> Any:
        """A guarded call that was stopped before it reached the model."""
        if call.kind == "roll":
            # no steps were taken: record_top_k callers get an empty list of step distributions
            record = call.params is not None and call.params.record_top_k > 0
            return [Rollout([], [], "", reason, [] if record else None) for _ in call.prefixes]
        raise BudgetExhausted(reason)

    # ----- dispatcher --------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            group = self._next_group()
            try:
                self._run(group)
            except BaseException as e:  # delivered to every caller of the batch
                for call in group:
                    call.error = e
            for call in group:
                call.done.set()

    def _concurrency(self, now: float) -> int:
        """How many callers may send a call soon: open requests, or threads seen in the last second."""
        for t in [t for t, seen in self._seen.items() if now - seen > 1.0]:
            del self._seen[t]
        return max(len(self._seen), _open_requests[0])

    def _next_group(self) -> list[_Call]:
        with self._cond:
            while not self._pending:
                self._cond.wait()
            first = self._pending[0]
            if first.kind != "solo" and self.window > 0:
                end = first.arrived + self.window
                while (now := time.monotonic()) < end and self._concurrency(now) > 1:
                    if len({c.thread for c in self._pending}) >= self._concurrency(now):
                        break  # everyone who could join has joined
                    self._cond.wait(end - now)
            group: list[_Call] = []
            rows = 0
            for call in list(self._pending):
                if call.key == first.key and (not group or rows + len(call.prefixes) <= self.max_rows):
                    group.append(call)
                    rows += len(call.prefixes)
                    self._pending.remove(call)
                    call.started = True
            return group

    def _run(self, group: list[_Call]) -> None:
        self.batching.batches += 1
        self.batching.calls += len(group)
        self.batching.rows += sum(len(c.prefixes) for c in group)
        if len(group) > 1:
            self.batching.merged_calls += len(group)
        head = group[0]
        if head.kind == "solo":
            assert head.thunk is not None
            head.result = head.thunk(head.stats)
        elif head.kind == "ntd":
            self._run_ntd(group)
        else:
            self._run_rollouts(group)

    def _run_ntd(self, group: list[_Call]) -> None:
        total = CallStats()
        k = max(c.k for c in group)
        dists = self.inner.next_token_dists([p for c in group for p in c.prefixes], k, total)
        at = 0
        for call in group:
            mine = dists[at : at + len(call.prefixes)]
            at += len(call.prefixes)
            call.result = [_top(d, call.k) for d in mine]
        _split(group, total, [total.forward_passes] * len(group), [0] * len(group))

    def _run_rollouts(self, group: list[_Call]) -> None:
        head = group[0]
        assert head.params is not None
        total = CallStats()
        guards = [GuardStop(c.guard) if c.guard is not None else None for c in group]
        prefixes = [p for c in group for p in c.prefixes]
        stops: list[StopCondition] = []
        own = [list(c.row_stops[j]) if c.row_stops else [] for c in group for j in range(len(c.prefixes))]
        if len(group) == 1 and guards[0] is not None:
            stops.append(guards[0])
        elif any(guards):
            rows = [g for c, g in zip(group, guards, strict=True) for _ in c.prefixes]
            own = [r + [g] if g is not None else r for r, g in zip(own, rows, strict=True)]
        settings = sum((c.rows for c in group if c.rows is not None), RowSettings((), ()))
        record = max(c.params.record_top_k for c in group if c.params is not None)
        params = head.params.model_copy(
            update={"max_new_tokens": max(settings.max_new_tokens), "record_top_k": record, "stop": ()}
        )
        out = self.inner.rollouts(prefixes, params, stops, total, own if any(own) else None, rows=settings)
        at, passes, generated = 0, [], []
        for call, guard in zip(group, guards, strict=True):
            assert call.params is not None
            mine = out[at : at + len(call.prefixes)]
            at += len(call.prefixes)
            if record != call.params.record_top_k:
                for r in mine:
                    r.step_dists = _trimmed(r.step_dists, call.params.record_top_k)
            if guard is not None and guard.fired:
                for r in mine:
                    r.finish_reason = guard.fired
            call.result = mine
            generated.append(sum(len(r.token_ids) for r in mine))
            passes.append(
                min(
                    total.forward_passes,
                    max((len(r.token_ids) + (r.finish_reason == "eos") for r in mine), default=0),
                )
            )
        _split(group, total, passes, generated)


def merge_key(params: GenerationParams) -> GenerationParams:
    """What the rows of one batched call must share: the decoding rule. Each row keeps its own
    length and seed (``RowSettings``) and stops (``row_stops``); the batch records the largest
    top-k any caller asks for and each caller gets its own (a prefix of it). Greedy decoding takes
    the argmax, so temperature, top-p and beams do not part greedy callers.

    >>> greedy = GenerationParams(max_new_tokens=64, temperature=0.2, record_top_k=3, stop=("x",))
    >>> merge_key(greedy) == merge_key(GenerationParams(max_new_tokens=8))
    True
    >>> sampled = GenerationParams(mode="sample", temperature=0.7, seed=1, record_top_k=2)
    >>> merge_key(sampled) == merge_key(sampled.model_copy(update={"seed": 9, "record_top_k": 0}))
    True
    >>> merge_key(sampled) == merge_key(sampled.model_copy(update={"temperature": 1.0}))
    False
    """
    if params.mode == DecodeMode.greedy:
        return GenerationParams(max_new_tokens=1)
    return GenerationParams(
        max_new_tokens=1, mode=params.mode, temperature=params.temperature, top_p=params.top_p
    )


def _top(dist: TokenDist, k: int) -> TokenDist:
    """``dist`` as a caller that asked for its top-``k`` gets it (the entropy is the full one)."""
    return TokenDist(dist.token_ids[:k], dist.logprobs[:k], dist.entropy)


def _trimmed(dists: list[TokenDist] | None, k: int) -> list[TokenDist] | None:
    """A row's recorded steps as a caller that asked for top-``k`` (0: none) gets them."""
    if dists is None or k == 0:
        return None
    return [_top(d, k) for d in dists]


def _split(group: list[_Call], total: CallStats, passes: list[int], generated: list[int]) -> None:
    """Give each caller its share of a merged call's work (see the module docstring)."""
    if len(group) == 1:
        group[0].stats.add(total)
        return
    weights = [sum(len(p) for p in c.prefixes) + g for c, g in zip(group, generated, strict=True)]
    wsum = max(1, sum(weights))
    for call, w, fp, gen in zip(group, weights, passes, generated, strict=True):
        call.stats.add(
            CallStats(
                forward_passes=fp,
                processed_tokens=round(total.processed_tokens * w / wsum),
                generated_tokens=gen,
                reused_tokens=round(total.reused_tokens * w / wsum),
                calls=1,
            )
        )
