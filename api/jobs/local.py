"""Solve jobs: a bounded queue in front of the shared ``Engine``.

``JobManager`` runs at most ``max_running`` searches at once (a thread pool) and lets at most
``max_waiting`` more wait; beyond that ``submit`` raises ``QueueFull`` (the server answers 429
with Retry-After). Each job keeps its own search state (the engine makes a new ``SearchContext``
per solve), its progress events (the planner's ``ctx.emit`` plus ``started`` / ``finished`` /
``failed`` / ``cancelled``) and a cancel event handed to ``Engine.run``: it is part of the
search's one guard (``Meter.guard()``), so a cancelled search stops at its next step or decoding step.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from api.core.contracts import JobStatus, SolveReport, SolveSpec, terminal_event
from api.core.engine import Engine
from api.jobs.backend import TERMINAL, JobView, QueueFull, admits_event
from api.jobs.lifecycle import JobOutcome, run_lifecycle

__all__ = ["TERMINAL", "Job", "JobManager", "QueueFull"]

log = logging.getLogger("treedec.server")


@dataclass(eq=False)
class Job(JobView):
    """A job run in this process; its state, events and result live here."""

    id: str
    spec: SolveSpec
    status: JobStatus = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    result: SolveReport | None = None
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
            if not admits_event(event, lambda: len(self.events)):
                self.dropped_events += 1  # keep the stream bounded; terminal events always go in
                return
            self.events.append(record)

    def events_since(self, index: int) -> list[dict[str, Any]]:
        with self._lock:
            return self.events[index:]

    def event_count(self) -> int:
        return len(self.events) + self.dropped_events

    def summary_extras(self) -> dict[str, Any]:
        return {"budget": self.budget.model_dump(exclude_none=True)}


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

    def submit_many(self, specs: Sequence[SolveSpec]) -> list[Job]:
        """Admit all of them or none (QueueFull)."""
        jobs = [Job(id="job-" + uuid.uuid4().hex[:16], spec=spec) for spec in specs]
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

    def submit(self, spec: SolveSpec) -> Job:
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
                self._finish(job, JobOutcome("cancelled"))
                return
            with self._lock:
                self._running += 1
            job.status, job.started = "running", time.time()
            run_lifecycle(
                self.engine, job.id, job.spec, job.emit, job.cancel, lambda o: self._finish(job, o), log
            )
        finally:
            with self._lock:
                self._active -= 1
                if job.started is not None:
                    self._running -= 1

    def _finish(self, job: Job, outcome: JobOutcome) -> None:
        job.result, job.error, job.error_id = outcome.result, outcome.error, outcome.error_id
        job.finished = time.time()
        # before the status, so a reader that sees the job done has its last event
        job.emit(terminal_event(outcome.status, job.result, job.error, job.error_id))
        job.status = outcome.status
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
