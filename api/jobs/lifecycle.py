"""One job's lifecycle, the same on both backends: started, run, cancelled or failed, finished.

``run_lifecycle`` is what ``api.jobs.local.JobManager`` (a thread of this process) and
``api.jobs.worker.run_job`` (a ``treedec worker``) run for a job; each hands it how to publish a
progress event and how to record the end (the ``Job`` object in memory, the job's record in Redis).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from api.core.contracts import JobStatus, SolveReport, SolveSpec
from api.core.engine import Engine
from search.state.context import EventSink


@dataclass(frozen=True)
class JobOutcome:
    """How a job ended: its terminal status, the search's report (when it returned one) and the
    error (when it raised)."""

    status: JobStatus
    result: SolveReport | None = None
    error: str | None = None
    error_id: str | None = None


def failure(job_id: str, e: BaseException, log: logging.Logger) -> tuple[str, str]:
    """A search that raised (a bug or a sandbox failure): logged with an id; the one-line error
    and the id the job reports."""
    error_id = uuid.uuid4().hex[:12]
    error = f"{type(e).__name__}: {e}".splitlines()[0][:500]
    log.error("job %s failed (error id %s)", job_id, error_id, exc_info=e)
    return error, error_id


def run_lifecycle(
    engine: Engine,
    job_id: str,
    spec: SolveSpec,
    emit: EventSink,
    cancel: threading.Event,
    finish: Callable[[JobOutcome], None],
    log: logging.Logger,
    started: dict[str, Any] | None = None,
) -> JobOutcome:
    """Announce the job (a ``started`` event: the planner, then the fields of ``started``), run its
    search, and hand ``finish`` how it ended: cancelled whenever ``cancel`` was set, else succeeded,
    or failed when the search raised."""
    emit({"event": "started", "planner": spec.planner, **(started or {})})
    try:
        result = engine.run(spec, events=emit, cancel=cancel)  # the cancel event stops the search
        outcome = JobOutcome("cancelled" if cancel.is_set() else "succeeded", result)
    except Exception as e:  # a bug or a sandbox failure: logged with an id, reported on the job
        error, error_id = failure(job_id, e, log)
        outcome = JobOutcome("cancelled" if cancel.is_set() else "failed", None, error, error_id)
    finish(outcome)
    return outcome
