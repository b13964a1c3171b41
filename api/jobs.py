"""Solve jobs: a bounded queue in front of the shared ``Engine``.

``JobManager`` runs at most ``max_running`` searches at once (a thread pool) and lets at most
``max_waiting`` more wait; beyond that ``submit`` raises ``QueueFull`` (the server answers 429
with Retry-After). Each job keeps its own search state (the engine makes a new ``SearchContext``
per solve), its progress events (the planner's ``ctx.emit`` plus ``started`` / ``finished`` /
``failed`` / ``cancelled``) and a cancel event handed to ``Engine.solve``: it is part of the
search's one guard (``Meter.guard()``), so a cancelled search stops at its next step or decoding step.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from api.engine import Engine
from search.budget import Budget
from search.problem import Problem

log = logging.getLogger("treedec.server")

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL = ("succeeded", "failed", "cancelled")
MAX_EVENTS = 5000


class QueueFull(Exception):
    """No room for another search right now."""


@dataclass
class Job:
    id: str
    problem: Problem
    planner: str
    params: dict[str, Any]
    budget: Budget
    include_tree: bool = True
    evaluate_hidden: bool = False
    prompt_style: str = "auto"
    status: Status = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    error_id: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    dropped_events: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    future: Future[None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def emit(self, event: dict[str, Any]) -> None:
        with self._lock:
            seq = len(self.events) + self.dropped_events
            record = {"seq": seq, "t": round(time.time() - self.created, 3), **event}
            if len(self.events) >= MAX_EVENTS and event.get("event") not in TERMINAL + ("started",):
                self.dropped_events += 1  # keep the stream bounded; terminal events always go in
                return
            self.events.append(record)

    def events_since(self, index: int) -> list[dict[str, Any]]:
        with self._lock:
            return self.events[index:]

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "planner": self.planner,
            "problem_id": self.problem.id,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "events": len(self.events) + self.dropped_events,
            "budget": self.budget.model_dump(exclude_none=True),
        }
        if self.result is not None:
            out["result"] = {k: v for k, v in self.result.items() if k != "tree"}
        if self.error is not None:
            out["error"] = self.error
            if self.error_id:
                out["error_id"] = self.error_id
        return out


class JobManager:
    """Admission, execution and bookkeeping of solve jobs on one engine."""

    def __init__(
        self,
        engine: Engine,
        max_running: int,
        max_waiting: int,
        keep_jobs: int = 1000,
        on_done: Callable[[Job], None] | None = None,
        keep_seconds: float = 86_400.0,
    ) -> None:
        self.engine = engine
        self.capacity = max_running + max_waiting
        self.keep_jobs = keep_jobs
        self.keep_seconds = keep_seconds
        self.on_done = on_done
        self._pool = ThreadPoolExecutor(max_workers=max_running, thread_name_prefix="treedec-job")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._active = 0
        self._running = 0
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        return self._active

    @property
    def running(self) -> int:
        return self._running

    def submit_many(self, specs: list[dict[str, Any]]) -> list[Job]:
        """Admit all of them or none (QueueFull)."""
        jobs = [Job(id="job-" + uuid.uuid4().hex[:16], **spec) for spec in specs]
        with self._lock:
            if self._active + len(jobs) > self.capacity:
                raise QueueFull(f"{self._active} searches running or waiting (capacity {self.capacity})")
            self._active += len(jobs)
            for job in jobs:
                self._jobs[job.id] = job
            self._prune()
        for job in jobs:
            job.future = self._pool.submit(self._run, job)
        return jobs

    def submit(self, **spec: Any) -> Job:
        return self.submit_many([spec])[0]

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            self._prune()
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        if job is not None and not job.done:
            job.cancel.set()
        return job

    def _prune(self) -> None:
        """Forget finished jobs beyond the newest ``keep_jobs`` and those finished more than
        ``keep_seconds`` ago (their results, events and trees go with them). Caller holds the lock."""
        finished = [j for j in self._jobs.values() if j.done]
        expired = time.time() - self.keep_seconds
        stale = finished[: max(0, len(finished) - self.keep_jobs)]
        stale += [j for j in finished if j.finished is not None and j.finished < expired]
        for job in stale:
            self._jobs.pop(job.id, None)

    def _run(self, job: Job) -> None:
        try:
            if job.cancel.is_set():
                self._finish(job, "cancelled")
                return
            with self._lock:
                self._running += 1
            job.status, job.started = "running", time.time()
            job.emit({"event": "started", "planner": job.planner})
            job.result = self.engine.solve(  # the cancel event stops the search (Engine.solve)
                job.problem,
                job.planner,
                job.params,
                job.budget,
                events=job.emit,
                evaluate_hidden=job.evaluate_hidden,
                include_tree=job.include_tree,
                cancel=job.cancel,
                prompt_style=job.prompt_style,
            )
            self._finish(job, "cancelled" if job.cancel.is_set() else "succeeded")
        except Exception as e:  # a bug or a sandbox failure: logged with an id, reported on the job
            job.error_id = uuid.uuid4().hex[:12]
            job.error = f"{type(e).__name__}: {e}".splitlines()[0][:500]
            log.error("job %s failed (error id %s)", job.id, job.error_id, exc_info=e)
            self._finish(job, "cancelled" if job.cancel.is_set() else "failed")
        finally:
            with self._lock:
                self._active -= 1
                if job.started is not None:
                    self._running -= 1

    def _finish(self, job: Job, status: Status) -> None:
        job.finished = time.time()
        data: dict[str, Any] = {"event": status}
        if job.result is not None:
            data.update(
                spend=job.result.get("spend"),
                stop_reason=job.result.get("stop_reason"),
                public=(job.result.get("public") or {}).get("pass_rate"),
            )
        if job.error is not None:
            data.update(error=job.error, error_id=job.error_id)
        job.emit(data)  # before the status, so a reader that sees the job done has its last event
        job.status = status
        if self.on_done is not None:
            try:
                self.on_done(job)
            except Exception:  # metrics must never break a job
                log.exception("on_done hook failed for %s", job.id)
        with self._lock:
            self._prune()

    def shutdown(self) -> None:
        for job in list(self._jobs.values()):
            job.cancel.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
