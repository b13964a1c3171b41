"""What a search may spend, and what it spent.

``Budget`` is the request knob (validated once, reused by the CLI, the REST schema and planners);
``Spend`` is the running account every model call, execution and cache lookup is charged to;
``Meter`` joins the two with the clock and answers "may I spend more?".

``Budget.max_tokens`` is the whole search's budget: every token it generates (rollouts,
lookaheads, candidates) counts (CLI ``--max-tokens``, REST and OpenAI ``budget.max_tokens``). One
completion's length is a planner's ``max_new_tokens``, which an OpenAI request's top-level
``max_tokens`` sets; the plain server's ``max_tokens`` is the length of one call.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from search.limits.stops import Guard


class Budget(BaseModel):
    """Limits for one search; ``None`` means unlimited (a planner's own defaults still apply).

    >>> Budget(max_tokens=512).max_tokens
    512
    >>> try:
    ...     Budget(max_tokens=0)
    ... except ValueError as e:
    ...     print("max_tokens" in str(e))
    True
    """

    model_config = ConfigDict(extra="forbid")
    max_tokens: int | None = Field(
        None, ge=1, le=10_000_000, description="generated tokens (incl. lookahead)"
    )
    max_forward_passes: int | None = Field(None, ge=1, le=10_000_000, description="model forward passes")
    max_executions: int | None = Field(None, ge=1, le=1_000_000, description="sandbox executions")
    max_rollouts: int | None = Field(None, ge=1, le=100_000, description="complete rollouts / samples")
    max_seconds: float | None = Field(None, gt=0, le=86_400, description="wall-clock seconds")


@dataclass
class Spend:
    """What a search spent. ``extra`` holds planner-specific counts (pauses, lookahead tokens...)."""

    generated_tokens: int = 0
    cached_tokens: int = 0
    processed_tokens: int = 0
    forward_passes: int = 0
    executions: int = 0
    cached_executions: int = 0
    rollouts: int = 0
    scorer_calls: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    # rollouts (and their tokens) read off this search's own earlier greedy paths (search/state/paths.py):
    # those tokens were generated and charged once, so they are not charged again
    path_hits: int = 0
    path_tokens: int = 0
    seconds: float = 0.0
    extra: dict[str, int | float] = field(default_factory=dict)  # a count stays an int

    def rounded(self) -> Spend:
        """A copy as reported: seconds to 0.1 ms."""
        return replace(self, seconds=round(self.seconds, 4), extra=dict(self.extra))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self.rounded())


class BudgetExhausted(Exception):
    """Raised inside a planner's loop when the budget runs out; the planner template
    (``Planner.solve``, planners/base.py) catches it and builds the result."""


@dataclass
class Meter:
    """A Budget, the Spend against it and the clock. Thread-safe for counters."""

    budget: Budget = field(default_factory=Budget)
    spend: Spend = field(default_factory=Spend)
    started: float = field(default_factory=time.monotonic)
    cancelled: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def charge(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                setattr(self.spend, name, getattr(self.spend, name) + amount)

    def count(self, name: str, amount: float = 1) -> None:
        """Add to a planner-specific counter in ``spend.extra`` (created at 0 on first use).

        >>> m = Meter()
        >>> m.count("pauses"); m.count("pauses", 2); m.count("switches", 0)
        >>> m.spend.extra
        {'pauses': 3, 'switches': 0}
        """
        with self._lock:
            self.spend.extra[name] = self.spend.extra.get(name, 0) + amount

    def guard(self) -> Guard:
        """The search's one stop: its cancel event and its wall-time deadline. The planner loop
        sees it through ``check``; model calls get it handed down (``MeteredLM``, and the Engine's
        ``request_guard`` for the batching dispatcher)."""
        limit = self.budget.max_seconds
        return Guard(self.cancelled, self.started + limit if limit is not None else None)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def exhausted_reason(self) -> str | None:
        """Why the search must stop now, or None."""
        b, s = self.budget, self.spend
        if self.cancelled.is_set():
            return "cancelled"
        if b.max_tokens is not None and self.tokens_used() >= b.max_tokens:
            return "max_tokens"
        if b.max_forward_passes is not None and s.forward_passes >= b.max_forward_passes:
            return "max_forward_passes"
        if b.max_executions is not None and s.executions + s.cached_executions >= b.max_executions:
            return "max_executions"
        if b.max_rollouts is not None and s.rollouts >= b.max_rollouts:
            return "max_rollouts"
        if b.max_seconds is not None and self.elapsed() >= b.max_seconds:
            return "max_seconds"
        return None

    def exhausted(self) -> bool:
        return self.exhausted_reason() is not None

    def remaining_tokens(self) -> int | None:
        if self.budget.max_tokens is None:
            return None
        return max(0, self.budget.max_tokens - self.tokens_used())

    def remaining_forward_passes(self) -> int | None:
        if self.budget.max_forward_passes is None:
            return None
        return max(0, self.budget.max_forward_passes - self.spend.forward_passes)

    def tokens_used(self) -> int:
        """Tokens the search consumed, generated now or served from the cache. A budget counts
        both, so a search makes the same decisions whatever the cache holds (a second process on a
        warm shared cache repeats the first one's search from the cache instead of searching further)."""
        return self.spend.generated_tokens + self.spend.cached_tokens

    def check(self) -> None:
        reason = self.exhausted_reason()
        if reason:
            raise BudgetExhausted(reason)

    def finish(self) -> Spend:
        self.spend.seconds = self.elapsed()
        return self.spend
