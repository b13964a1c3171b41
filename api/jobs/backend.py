"""What the two job backends share: the ``JobBackend`` protocol the REST and OpenAI routes use,
and one implementation of a job's summary, its terminal event and the event limit.

The backends are ``api.jobs.local.JobManager`` (searches run in this process, on a thread pool) and
``api.jobs.queue.RedisJobManager`` (searches run on ``treedec worker`` processes, state in Redis). Their
jobs (``api.jobs.local.Job``, ``api.jobs.queue.RedisJob``) are ``JobView``s: the routes read a job's status,
result (a ``SolveReport``), error, events and summary the same way on either.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Protocol

from api.core.contracts import TERMINAL, SolveReport, SolveSpec, terminal_event
from search.limits.budget import Budget
from search.problems.problem import Problem

__all__ = [
    "MAX_EVENTS",
    "TERMINAL",
    "JobBackend",
    "JobView",
    "QueueFull",
    "admits_event",
    "terminal_event",
]

MAX_EVENTS = 5000  # progress events kept per job; past it only ``started`` and terminal events go in


class QueueFull(Exception):
    """No room for another search right now."""


def admits_event(event: dict[str, Any], count: Callable[[], int]) -> bool:
    """Whether a job that holds ``count()`` events takes ``event``: the stream stays bounded, and a
    job's ``started`` and terminal events always go in (``count`` is not called for them)."""
    return event.get("event") in (*TERMINAL, "started") or count() < MAX_EVENTS


class Cancel(Protocol):
    def set(self) -> None: ...

    def is_set(self) -> bool: ...


class JobView:
    """A job as the routes see it, whichever backend holds it. A backend's job class provides
    ``id``, ``spec``, ``created``, ``status``, ``started``, ``finished``, ``result``, ``error``,
    ``error_id``, ``cancel``, ``future``, ``events_since``, ``event_count`` and ``summary_extras``;
    the rest is here, once."""

    id: str
    spec: SolveSpec
    created: float
    cancel: Cancel
    future: Future[None] | None

    # ----- provided by the backend --------------------------------------------------------------
    @property
    def status(self) -> str:
        raise NotImplementedError

    @property
    def started(self) -> float | None:
        raise NotImplementedError

    @property
    def finished(self) -> float | None:
        raise NotImplementedError

    @property
    def result(self) -> SolveReport | None:
        raise NotImplementedError

    @property
    def error(self) -> str | None:
        raise NotImplementedError

    @property
    def error_id(self) -> str | None:
        raise NotImplementedError

    def events_since(self, index: int) -> list[dict[str, Any]]:
        raise NotImplementedError

    def event_count(self) -> int:
        raise NotImplementedError

    def summary_extras(self) -> dict[str, Any]:
        """Backend-specific summary fields, after ``events``."""
        return {}

    # ----- shared -------------------------------------------------------------------------------
    @property
    def planner(self) -> str:
        return self.spec.planner

    @property
    def problem(self) -> Problem:
        return self.spec.problem

    @property
    def budget(self) -> Budget:
        return self.spec.budget

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def summary(self) -> dict[str, Any]:
        """``GET /v1/jobs/{id}``: status, times, event count, the result without its tree, the error."""
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "planner": self.planner,
            "problem_id": self.problem.id,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "events": self.event_count(),
            **self.summary_extras(),
        }
        result = self.result
        if result is not None:
            out["result"] = result.to_json(tree=False)
        if self.error is not None:
            out["error"] = self.error
            if self.error_id:
                out["error_id"] = self.error_id
        return out

    def answer(self) -> dict[str, Any]:
        """``POST /v1/solve``'s answer: the job id and status, the report, the error."""
        out: dict[str, Any] = {"job_id": self.id, "status": self.status}
        if self.result is not None:
            out.update(self.result.to_json())
        if self.error is not None:
            out.update(error=self.error, error_id=self.error_id)
        return out


class JobBackend(Protocol):
    """Admission, execution and bookkeeping of solve jobs (``api.jobs.local.JobManager`` in process,
    ``api.jobs.queue.RedisJobManager`` on Redis)."""

    capacity: int
    on_done: Callable[[Any], None] | None

    @property
    def running(self) -> int: ...

    @property
    def active(self) -> int: ...

    def submit_many(self, specs: Sequence[SolveSpec]) -> Sequence[JobView]:
        """Admit all of them or none (``QueueFull``)."""
        ...

    def submit(self, spec: SolveSpec) -> JobView: ...

    def get(self, job_id: str) -> JobView | None: ...

    def cancel(self, job_id: str) -> JobView | None: ...

    def shutdown(self) -> None: ...
