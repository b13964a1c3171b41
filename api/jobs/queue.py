"""Solve jobs on a Redis-backed queue (RQ): ``RedisJobManager``, the API side; the worker side is
``api/jobs/worker.py`` (``treedec worker``).

``RedisJobManager`` is a ``JobBackend`` (``api/jobs/backend.py``) like ``api.jobs.local.JobManager``, and its
jobs (``RedisJob``) are ``JobView``s like ``api.jobs.local.Job``, so the REST routes work the same on
either. The difference: a job is enqueued on RQ and run by whichever ``treedec worker`` takes it;
its state lives in Redis (``api/jobs/queue_store.py``: keys, the first-finish-wins script; written as
``api/jobs/queue_codec.py`` says), so any API replica can answer for it and a restarted replica still has
every finished result. RQ carries only the job id (JSON serializer: reading a queue entry never
unpickles).

Faults: Redis unreachable -> ``QueueUnavailable``, an ``APIError`` the server answers with 503 and
a one-line message. A worker that dies mid-job stops renewing its lease; another worker's RQ
maintenance finds the job abandoned and re-enqueues it (``Retry(max=retries)``) or, with no retries
left, the failure callback marks it failed with the reason. See ``api/jobs/worker.py``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import redis
from redis.exceptions import RedisError

from api.core.contracts import SolveReport, SolveSpec
from api.jobs.backend import TERMINAL, JobView, QueueFull
from api.jobs.queue_codec import decode_result, decode_spec, spec_from_json, spec_to_json, text
from api.jobs.queue_store import (
    DEFAULT_PREFIX,
    PENDING_TTL_S,
    RESULT_TTL_S,
    JobStore,
    QueueUnavailable,
    redact,
)
from search.limits.budget import Budget

__all__ = [
    "DEFAULT_PREFIX",
    "PENDING_TTL_S",
    "QUEUE_NAME",
    "RESULT_TTL_S",
    "JobStore",
    "QueueUnavailable",
    "RedisJob",
    "RedisJobManager",
    "redact",
    "spec_from_json",
    "spec_to_json",
]

log = logging.getLogger("treedec.queue")

QUEUE_NAME = "treedec-solve"
WATCH_INTERVAL_S = 0.1
RECONCILE_INTERVAL_S = 2.0


class RemoteCancel:
    """``job.cancel`` of a queued job: ``set()`` asks whichever worker runs it to stop."""

    def __init__(self, manager: RedisJobManager, job_id: str) -> None:
        self.manager, self.job_id = manager, job_id

    def set(self) -> None:
        self.manager.cancel(self.job_id)

    def is_set(self) -> bool:
        return self.manager.guarded(lambda: self.manager.store.cancel_requested(self.job_id))


class RedisJob(JobView):
    """A live view of one job in Redis."""

    def __init__(self, manager: RedisJobManager, job_id: str, record: dict[str, str]) -> None:
        self.manager = manager
        self.id = job_id
        self.spec = decode_spec(record["spec"])
        self.created = float(record.get("created") or 0.0)
        self.cancel = RemoteCancel(manager, job_id)
        self.future: Future[None] | None = None
        self._record = record
        self._terminal: dict[str, str] | None = record if record.get("status") in TERMINAL else None
        self._result: tuple[str, SolveReport | None] | None = None

    def _fresh(self) -> dict[str, str]:
        if self._terminal is not None:
            return self._terminal
        record = self.manager.guarded(lambda: self.manager.store.record(self.id))
        if record is None:  # expired under us: keep what we saw last
            return self._record
        self._record = record
        if record.get("status") in TERMINAL:
            self._terminal = record
        return record

    @property
    def status(self) -> str:
        return self._fresh().get("status", "queued")

    def _float(self, name: str) -> float | None:
        value = self._fresh().get(name)
        return float(value) if value else None

    @property
    def started(self) -> float | None:
        return self._float("started")

    @property
    def finished(self) -> float | None:
        return self._float("finished")

    @property
    def result(self) -> SolveReport | None:
        raw = self._fresh().get("result") or ""
        if self._result is None or self._result[0] != raw:
            self._result = (raw, decode_result(raw))
        return self._result[1]

    @property
    def error(self) -> str | None:
        return self._fresh().get("error") or None

    @property
    def error_id(self) -> str | None:
        return self._fresh().get("error_id") or None

    @property
    def attempts(self) -> int:
        return int(self._fresh().get("attempts") or 0)

    def events_since(self, index: int) -> list[dict[str, Any]]:
        return self.manager.guarded(lambda: self.manager.store.events(self.id, index))

    def event_count(self) -> int:
        return int(self.manager.guarded(lambda: self.manager.store.event_count(self.id)))

    def summary_extras(self) -> dict[str, Any]:
        return {"attempts": self.attempts, "worker": self._fresh().get("worker")}


class RedisJobManager:
    """Jobs on an RQ queue in Redis; the interface of ``api.jobs.local.JobManager``."""

    def __init__(
        self,
        client: redis.Redis,
        url: str = "redis",
        prefix: str = DEFAULT_PREFIX,
        max_queued: int = 1000,
        retries: int = 2,
        result_ttl: int = RESULT_TTL_S,
        job_timeout_grace_s: float = 300.0,
        on_done: Callable[[RedisJob], None] | None = None,
    ) -> None:
        from rq import Queue
        from rq.serializers import JSONSerializer

        self.url = redact(url)
        self.client = client
        self.store = JobStore(client, prefix, result_ttl, self.url)
        self.queue = Queue(f"{prefix}-{QUEUE_NAME}", connection=client, serializer=JSONSerializer)
        self.capacity = max_queued
        self.retries = retries
        self.job_timeout_grace_s = job_timeout_grace_s
        self.on_done = on_done
        self._watched: dict[str, RedisJob] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="treedec-queue-watch", daemon=True)
        self._watcher.start()

    @classmethod
    def connect(cls, url: str, **kwargs: Any) -> RedisJobManager:
        """Connect to ``redis://host:port/db`` (``?prefix=`` separates deployments); fail with a
        one-line ``QueueUnavailable`` when the server does not answer."""
        from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"--queue expects redis://host:port/db, got {url!r}")
        query = dict(parse_qsl(parts.query))
        prefix = query.pop("prefix", kwargs.pop("prefix", DEFAULT_PREFIX))
        clean = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))
        client = redis.Redis.from_url(
            clean, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
        )
        try:
            client.ping()
        except RedisError as e:
            raise QueueUnavailable(redact(url), e) from e
        return cls(client, url=url, prefix=prefix, **kwargs)

    # ----- helpers ------------------------------------------------------------------------
    def guarded(self, fn: Callable[[], Any]) -> Any:
        """Run a Redis operation; a Redis failure becomes ``QueueUnavailable`` (503)."""
        try:
            return fn()
        except RedisError as e:
            raise QueueUnavailable(self.url, e) from e

    def _job_timeout(self, budget: Budget) -> int:
        return int((budget.max_seconds or 600.0) + self.job_timeout_grace_s)

    # ----- the JobManager interface -------------------------------------------------------
    @property
    def running(self) -> int:
        from rq.registry import StartedJobRegistry

        return int(self.guarded(lambda: StartedJobRegistry(queue=self.queue).count))

    @property
    def active(self) -> int:
        return int(self.guarded(lambda: self.queue.count)) + self.running

    def submit_many(self, specs: Sequence[SolveSpec]) -> list[RedisJob]:
        """Enqueue all of them or none (QueueFull when the queue holds ``capacity`` jobs)."""
        from rq import Callback, Queue, Retry

        waiting = int(self.guarded(lambda: self.queue.count))
        if waiting + len(specs) > self.capacity:
            raise QueueFull(f"{waiting} searches waiting in the queue (capacity {self.capacity})")
        now = time.time()
        ids = ["job-" + uuid.uuid4().hex[:16] for _ in specs]
        retry = Retry(max=self.retries) if self.retries else None
        datas = [
            Queue.prepare_data(
                "api.jobs.worker.run_job",
                args=(job_id,),
                job_id=job_id,
                retry=retry,
                timeout=self._job_timeout(s.budget),
                result_ttl=self.store.result_ttl,
                failure_ttl=self.store.result_ttl,
                on_failure=Callback("api.jobs.worker.on_job_failure"),
                meta={"treedec_prefix": self.store.prefix},
                description=f"{s.planner} on {s.problem.id}",
            )
            for job_id, s in zip(ids, specs, strict=True)
        ]

        def enqueue() -> None:
            with self.client.pipeline() as pipe:
                for job_id, spec in zip(ids, specs, strict=True):
                    self.store.create(job_id, spec, now, pipe)
                pipe.execute()
            self.queue.enqueue_many(datas)

        self.guarded(enqueue)
        records = {
            job_id: {k: str(v) for k, v in JobStore.new_record(spec, now).items()}
            for job_id, spec in zip(ids, specs, strict=True)
        }
        jobs = [RedisJob(self, job_id, records[job_id]) for job_id in ids]
        with self._lock:
            for job in jobs:
                job.future = Future()
                self._watched[job.id] = job
        return jobs

    def submit(self, spec: SolveSpec) -> RedisJob:
        return self.submit_many([spec])[0]

    def get(self, job_id: str) -> RedisJob | None:
        with self._lock:
            watched = self._watched.get(job_id)
        if watched is not None:
            return watched
        record = self.guarded(lambda: self.store.record(job_id))
        if record is None:
            return None
        if record.get("status") not in TERMINAL and self.guarded(lambda: self._reconcile(job_id)):
            record = self.guarded(lambda: self.store.record(job_id)) or record
        return RedisJob(self, job_id, record)

    def _reconcile(self, job_id: str) -> bool:
        """A job RQ gave up on (failed, stopped, cancelled) whose record did not hear of it (its
        failure callback could not run) is marked failed here; True if it was."""
        from rq.job import Job as RQJob

        raw = self.client.hget(RQJob.key_for(job_id), "status")
        rq_status = text(raw) if raw is not None else None
        if rq_status not in ("failed", "stopped", "canceled"):
            return False
        status = "cancelled" if rq_status == "canceled" else "failed"
        error = (
            None if status == "cancelled" else f"the queue marked the job {rq_status} (see the worker logs)"
        )
        return self.store.finish(job_id, status, error=error)

    def cancel(self, job_id: str) -> RedisJob | None:
        """Ask the worker to stop; a job still waiting in the queue is cancelled at once."""
        job = self.get(job_id)
        if job is None or job.done:
            return job

        def do_cancel() -> None:
            from rq.exceptions import InvalidJobOperation, NoSuchJobError
            from rq.job import Job as RQJob

            self.store.request_cancel(job_id)
            if self.store.field(job_id, "status") == "queued":
                try:
                    rq_job = RQJob.fetch(job_id, connection=self.client, serializer=self.queue.serializer)
                    rq_job.cancel()
                except (NoSuchJobError, InvalidJobOperation):
                    pass  # a worker took it meanwhile: it sees the cancel flag
                else:
                    self.store.finish(job_id, "cancelled")

        self.guarded(do_cancel)
        return job

    def shutdown(self) -> None:
        self._stop.set()
        self._watcher.join(timeout=2)

    # ----- completion of futures (for /v1/solve) and the on_done hook ---------------------
    def _watch(self) -> None:
        last_reconcile = time.monotonic()
        while not self._stop.wait(WATCH_INTERVAL_S):
            with self._lock:
                jobs = list(self._watched.values())
            if not jobs:
                continue
            try:
                with self.client.pipeline(transaction=False) as pipe:
                    for job in jobs:
                        pipe.hget(self.store.key(job.id), "status")
                    statuses = pipe.execute()
            except RedisError:
                continue  # Redis is down: futures wait; requests that poll get 503
            reconcile = time.monotonic() - last_reconcile > RECONCILE_INTERVAL_S
            for job, raw in zip(jobs, statuses, strict=True):
                status = raw.decode() if raw is not None else None
                if status not in TERMINAL and status is not None and reconcile:
                    try:
                        status = "failed" if self._reconcile(job.id) else status
                    except RedisError:
                        continue
                if status in TERMINAL or status is None:
                    self._resolve(job)
            if reconcile:
                last_reconcile = time.monotonic()

    def _resolve(self, job: RedisJob) -> None:
        with self._lock:
            self._watched.pop(job.id, None)
        if job.future is not None and not job.future.done():
            job.future.set_result(None)
        if self.on_done is not None:
            try:
                self.on_done(job)
            except Exception:  # metrics must never break a job
                log.exception("on_done hook failed for %s", job.id)
