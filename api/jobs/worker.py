"""``treedec worker``: a process that loads the model once and runs solve jobs from the Redis queue.

The worker is an RQ ``SimpleWorker`` (``TreedecWorker``): jobs run in the worker's own process, so
the ``Engine`` (model, cache, sandbox) is loaded once at start and kept in a module global
(``_ENGINE``) for every job; nothing forks per job. One worker runs one search at a time; run M
processes for M at once (on a GPU host, or against a remote model server, where a worker is light).

Leases, so a killed worker never loses a job silently: while a job runs, a heartbeat thread renews
the job's entry in RQ's StartedJobRegistry every ``lease_s / 3`` seconds with a TTL of ``lease_s``
(RQ's own TTL for a SimpleWorker is the whole job timeout + 60 s, too slow to notice a death). When
a worker dies (SIGKILL, OOM, lost host) the renewals stop; within ``lease_s`` the entry expires, and
the next maintenance pass of any live worker (every ``maintenance_s``, run from the heartbeat
thread too, so a busy worker still reaps) calls RQ's ``StartedJobRegistry.cleanup``: the job is
re-enqueued while it has retries left (``Retry(max=...)`` set at enqueue), else RQ fails it and
``on_job_failure`` marks the job record failed with the reason. Each attempt appends a
``started`` event with its ``attempt`` number; ``JobStore.finish`` keeps the first result only.

A cancel (``DELETE /v1/jobs/{id}``) sets a flag in Redis; the heartbeat thread sees it and sets the
job's cancel event, which stops the search at its next step (meter + model guard).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import redis
from redis.exceptions import RedisError
from rq.job import Job as RQJob
from rq.queue import Queue
from rq.worker import SimpleWorker

from api.core.engine import Engine
from api.jobs.backend import TERMINAL
from api.jobs.lifecycle import JobOutcome, run_lifecycle
from api.jobs.queue import QUEUE_NAME
from api.jobs.queue_codec import decode_spec
from api.jobs.queue_store import DEFAULT_PREFIX, JobStore, redact

log = logging.getLogger("treedec.worker")

_ENGINE: Engine | None = None
_STORE: JobStore | None = None
_CANCEL: dict[str, threading.Event] = {}
_WORKER_NAME = "treedec-worker"


def configure(engine: Engine, store: JobStore, name: str) -> None:
    """Set the process-wide engine and job store the RQ job functions use."""
    global _ENGINE, _STORE, _WORKER_NAME
    _ENGINE, _STORE, _WORKER_NAME = engine, store, name


def _require() -> tuple[Engine, JobStore]:
    if _ENGINE is None or _STORE is None:
        raise RuntimeError("api.jobs.worker.run_job runs inside `treedec worker` only (no engine configured)")
    return _ENGINE, _STORE


def run_job(job_id: str) -> dict[str, Any]:
    """The RQ job function: run one solve job whose spec is in the job store."""
    engine, store = _require()
    record = store.record(job_id)
    if record is None:
        return {"status": "expired"}
    if record.get("status") in TERMINAL:
        return {"status": record["status"]}  # cancelled while queued, or finished by an earlier attempt
    spec = decode_spec(record["spec"])
    created = float(record.get("created") or time.time())
    attempt = store.start(job_id, _WORKER_NAME)
    cancel = threading.Event()
    _CANCEL[job_id] = cancel
    if store.cancel_requested(job_id):
        cancel.set()

    def emit(event: dict[str, Any]) -> None:
        try:
            store.emit(job_id, created, event)
        except RedisError:  # progress is best effort; the result write below retries
            log.warning("could not publish an event of %s (Redis error)", job_id)

    def finish(outcome: JobOutcome) -> None:
        _finish_with_retries(store, job_id, outcome)

    try:
        outcome = run_lifecycle(
            engine, job_id, spec, emit, cancel, finish, log, {"attempt": attempt, "worker": _WORKER_NAME}
        )
    finally:
        _CANCEL.pop(job_id, None)
    return {"status": outcome.status}


def _finish_with_retries(store: JobStore, job_id: str, outcome: JobOutcome, attempts: int = 5) -> None:
    for i in range(attempts):
        try:
            store.finish(job_id, outcome.status, outcome.result, outcome.error, outcome.error_id)
            return
        except RedisError:
            if i == attempts - 1:
                raise  # RQ records the failure; the job is retried or failed, never silently lost
            time.sleep(0.2 * 2**i)


def on_job_failure(job: RQJob, connection: redis.Redis, exc_type: Any, exc_value: Any, tb: Any) -> None:
    """RQ failure callback: a worker died mid-job (``AbandonedJobError``) or the job raised. Records it
    on the job; marks the job failed when RQ will not retry it."""
    prefix = (job.meta or {}).get("treedec_prefix", DEFAULT_PREFIX)
    store = _STORE if _STORE is not None and _STORE.prefix == prefix else JobStore(connection, prefix)
    retrying = bool(job.retries_left and job.retries_left > 0)
    reason = type(exc_value).__name__ if exc_value is not None else str(exc_type)
    abandoned = reason == "AbandonedJobError"
    what = (
        "the worker running it stopped renewing its lease (killed or lost)"
        if abandoned
        else f"{reason}: {exc_value}".splitlines()[0][:300]
    )
    record = store.record(job.id)
    created = float(record.get("created") or time.time()) if record else time.time()
    attempts = int(record.get("attempts") or 0) if record else 0
    store.emit(
        job.id, created, {"event": "requeued" if retrying else "lost", "reason": what, "attempt": attempts}
    )
    if not retrying:
        store.finish(
            job.id,
            "failed",
            error=f"{what}; gave up after {attempts} attempt(s)",
            error_id="worker-lost" if abandoned else None,
        )


class TreedecWorker(SimpleWorker):
    """An RQ SimpleWorker with short job leases, reaping from the heartbeat thread, and cancel polling."""

    def __init__(self, *args: Any, lease_s: int = 30, **kwargs: Any) -> None:
        self.lease_s = max(3, int(lease_s))
        kwargs.setdefault("maintenance_interval", self.lease_s)
        super().__init__(*args, **kwargs)
        self._last_reap = 0.0

    def get_heartbeat_ttl(self, job: RQJob, working_time: float = 0.0) -> int:
        return self.lease_s

    @property
    def dequeue_timeout(self) -> int:
        """Wake up between blocking pops often enough to run maintenance (reap dead workers' jobs)."""
        return max(1, min(self.worker_ttl - 15, int(self.maintenance_interval)))

    def execute_job(self, job: RQJob, queue: Queue) -> None:
        from rq.worker import WorkerStatus

        execution = self.prepare_execution(job)
        stop = threading.Event()
        beat = threading.Thread(
            target=self._beat, args=(job, execution, stop), name="treedec-lease", daemon=True
        )
        beat.start()
        try:
            self.perform_job(job, queue, execution)
        finally:
            stop.set()
            beat.join(timeout=5)
        self.set_state(WorkerStatus.IDLE)

    def _beat(self, job: RQJob, execution: Any, stop: threading.Event) -> None:
        interval = self.lease_s / 3
        while not stop.wait(interval):
            try:
                self.maintain_heartbeats(job, execution)
                if _STORE is not None and job.id in _CANCEL and _STORE.cancel_requested(job.id):
                    _CANCEL[job.id].set()
                self.reap()
            except RedisError as e:
                log.warning("lease renewal of %s failed: %s", job.id, e)

    def reap(self) -> None:
        """Run RQ's abandoned-job handling if it is due (safe from any thread)."""
        from rq.registry import StartedJobRegistry
        from rq.timeouts import TimerDeathPenalty

        if time.monotonic() - self._last_reap < self.maintenance_interval:
            return
        self._last_reap = time.monotonic()
        for queue in self.queues:
            if queue.acquire_maintenance_lock():
                try:
                    StartedJobRegistry(queue=queue, death_penalty_class=TimerDeathPenalty).cleanup(
                        exception_handlers=self._exc_handlers
                    )
                finally:
                    queue.release_maintenance_lock()


def queue_for(client: redis.Redis, prefix: str) -> Queue:
    from rq.serializers import JSONSerializer

    return Queue(f"{prefix}-{QUEUE_NAME}", connection=client, serializer=JSONSerializer)


def run_worker(
    engine: Engine,
    queue_url: str,
    name: str | None = None,
    lease_s: int = 30,
    burst: bool = False,
    max_jobs: int | None = None,
    result_ttl: int | None = None,
) -> bool:
    """Load the engine's model, then take jobs until stopped (SIGTERM: after the current job)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    from rq.serializers import JSONSerializer

    parts = urlsplit(queue_url)
    query = dict(parse_qsl(parts.query))
    prefix = query.pop("prefix", DEFAULT_PREFIX)
    clean = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
    client = redis.Redis.from_url(clean, socket_connect_timeout=2, health_check_interval=30)
    try:
        client.ping()
    except RedisError as e:
        raise ConnectionError(f"the job queue (Redis at {redact(queue_url)}) is unavailable: {e}") from e
    name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    engine.model()  # load once, before the first job
    engine.get_cache()
    store = JobStore(client, prefix, result_ttl or JobStore(client).result_ttl, redact(queue_url))
    configure(engine, store, name)
    worker = TreedecWorker(
        [queue_for(client, prefix)], connection=client, name=name, lease_s=lease_s, serializer=JSONSerializer
    )
    log.info("worker %s on %s (model %s)", name, redact(queue_url), engine.model().identity.name)
    return bool(worker.work(burst=burst, max_jobs=max_jobs, logging_level="WARNING"))
