"""Solve jobs on a Redis-backed queue (RQ): ``RedisJobManager``, the API side; the worker side is
``api/worker.py`` (``treedec worker``).

``RedisJobManager`` has the interface of ``api.jobs.JobManager`` (``submit_many`` / ``submit`` /
``get`` / ``cancel`` / ``running`` / ``active`` / ``capacity`` / ``shutdown``), and its jobs
(``RedisJob``) the attributes the server reads from ``api.jobs.Job`` (``status``, ``done``,
``result``, ``error``, ``summary()``, ``events_since()``, ``future``, ``cancel.set()``), so the
REST routes work the same on either. The difference: a job is enqueued on RQ and run by whichever
``treedec worker`` takes it; its state lives in Redis, so any API replica can answer for it and a
restarted replica still has every finished result.

Redis keys (``{p}`` is the prefix, default ``treedec``; all expire):

- ``{p}:job:{id}``         hash: ``spec`` (JSON), ``status``, ``created`` / ``started`` /
  ``finished``, ``result`` (JSON), ``error``, ``error_id``, ``attempts``, ``worker``;
- ``{p}:job:{id}:events``  list of JSON progress events, appended by the worker running the job
  (``/v1/jobs/{id}/events`` reads it from any replica; ``seq`` is the index in the list);
- ``{p}:job:{id}:cancel``  present when a cancel was asked (the worker polls it).

Finishing is one Lua script (``JobStore.finish``): the first terminal status wins and later ones
are ignored, so a job that was run twice (a worker presumed dead that was only slow) still has
one result. RQ carries only the job id (JSON serializer: reading a queue entry never unpickles).

Faults: Redis unreachable -> ``QueueUnavailable``, an ``APIError`` the server answers with 503 and
a one-line message. A worker that dies mid-job stops renewing its lease; another worker's RQ
maintenance finds the job abandoned and re-enqueues it (``Retry(max=retries)``) or, with no retries
left, the failure callback marks it failed with the reason. See ``api/worker.py``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import redis
from redis.exceptions import RedisError

from api.errors import APIError
from api.jobs import TERMINAL, QueueFull
from search.budget import Budget
from search.problem import Problem

log = logging.getLogger("treedec.queue")

QUEUE_NAME = "treedec-solve"
DEFAULT_PREFIX = "treedec"
RESULT_TTL_S = 24 * 3600  # finished jobs (record, events, result) are kept this long
PENDING_TTL_S = 7 * 24 * 3600  # a queued or running job's record outlives any sane queue wait
MAX_EVENTS = 5000
WATCH_INTERVAL_S = 0.1
RECONCILE_INTERVAL_S = 2.0

_FINISH_LUA = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished', ARGV[3], 'result', ARGV[4], 'error', ARGV[5],
           'error_id', ARGV[6])
local ttl = tonumber(ARGV[7])
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[3], ttl)
return 1
"""


class QueueUnavailable(APIError):
    """The job queue's Redis cannot be reached: the server answers 503."""

    def __init__(self, url: str, cause: BaseException | str) -> None:
        reason = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        super().__init__(
            503,
            f"the job queue (Redis at {url}) is unavailable: {reason}; retry later",
            None,
            "service_unavailable",
            headers={"Retry-After": "5"},
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def redact(url: str) -> str:
    """The URL without a password, for messages."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


class JobStore:
    """Job records, events and cancel flags in Redis (used by API replicas and workers alike)."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = DEFAULT_PREFIX,
        result_ttl: int = RESULT_TTL_S,
        url: str = "redis",
    ) -> None:
        self.r = client
        self.prefix = prefix
        self.result_ttl = result_ttl
        self.url = url
        self._finish = client.register_script(_FINISH_LUA)

    def key(self, job_id: str, part: str = "") -> str:
        return f"{self.prefix}:job:{job_id}" + (f":{part}" if part else "")

    def create(self, job_id: str, spec: dict[str, Any], created: float, pipe: Any) -> None:
        pipe.hset(
            self.key(job_id),
            mapping={"spec": json.dumps(spec), "status": "queued", "created": created, "attempts": 0},
        )
        pipe.expire(self.key(job_id), PENDING_TTL_S)

    def record(self, job_id: str) -> dict[str, str] | None:
        raw = self.r.hgetall(self.key(job_id))
        if not raw:
            return None
        return {_text(k): _text(v) for k, v in raw.items()}

    def field(self, job_id: str, name: str) -> str | None:
        value = self.r.hget(self.key(job_id), name)
        return _text(value) if value is not None else None

    def emit(self, job_id: str, created: float, event: dict[str, Any]) -> None:
        """Append one progress event (bounded: past MAX_EVENTS only terminal ones go in)."""
        record = {"t": round(time.time() - created, 3), **event}
        key = self.key(job_id, "events")
        if event.get("event") not in (*TERMINAL, "started") and self.r.llen(key) >= MAX_EVENTS:
            self.r.hincrby(self.key(job_id), "dropped_events", 1)
            return
        with self.r.pipeline() as pipe:
            pipe.rpush(key, json.dumps(record, default=str))
            pipe.expire(key, PENDING_TTL_S)
            pipe.execute()

    def events(self, job_id: str, start: int) -> list[dict[str, Any]]:
        raw = self.r.lrange(self.key(job_id, "events"), start, -1)
        out = []
        for i, item in enumerate(raw):
            event = json.loads(item)
            out.append({"seq": start + i, **event})
        return out

    def event_count(self, job_id: str) -> int:
        return int(self.r.llen(self.key(job_id, "events")))

    def start(self, job_id: str, worker: str) -> int:
        """Mark running on ``worker``; the attempt number (1 on the first run)."""
        with self.r.pipeline() as pipe:
            pipe.hincrby(self.key(job_id), "attempts", 1)
            pipe.hset(
                self.key(job_id), mapping={"status": "running", "started": time.time(), "worker": worker}
            )
            attempts, _ = pipe.execute()
        return int(attempts)

    def finish(
        self,
        job_id: str,
        status: str,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        error_id: str | None = None,
    ) -> bool:
        """Set the terminal status (first one wins) with its event; True if this call set it."""
        event: dict[str, Any] = {"event": status}
        if result is not None:
            event.update(
                spend=result.get("spend"),
                stop_reason=result.get("stop_reason"),
                public=(result.get("public") or {}).get("pass_rate"),
            )
        if error is not None:
            event.update(error=error, error_id=error_id)
        created = float(self.field(job_id, "created") or time.time())
        event_json = json.dumps({"t": round(time.time() - created, 3), **event}, default=str)
        keys = [self.key(job_id), self.key(job_id, "events"), self.key(job_id, "cancel")]
        args: list[str | float | int] = [
            status,
            event_json,
            time.time(),
            json.dumps(result, default=str) if result is not None else "",
            error or "",
            error_id or "",
            self.result_ttl,
        ]
        return int(self._finish(keys=keys, args=args)) == 1

    def request_cancel(self, job_id: str) -> None:
        self.r.set(self.key(job_id, "cancel"), 1, ex=PENDING_TTL_S)

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.r.exists(self.key(job_id, "cancel")))


def spec_to_json(spec: dict[str, Any]) -> dict[str, Any]:
    """A job spec (as ``api.server`` builds it) in JSON form."""
    return {
        "problem": spec["problem"].model_dump(mode="json"),
        "planner": spec["planner"],
        "params": spec.get("params") or {},
        "budget": spec["budget"].model_dump(mode="json"),
        "include_tree": bool(spec.get("include_tree", True)),
        "evaluate_hidden": bool(spec.get("evaluate_hidden", False)),
        "prompt_style": str(spec.get("prompt_style", "auto")),
    }


def spec_from_json(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "problem": Problem.model_validate(data["problem"]),
        "planner": data["planner"],
        "params": dict(data.get("params") or {}),
        "budget": Budget.model_validate(data["budget"]),
        "include_tree": bool(data.get("include_tree", True)),
        "evaluate_hidden": bool(data.get("evaluate_hidden", False)),
        "prompt_style": str(data.get("prompt_style", "auto")),
    }


class RemoteCancel:
    """``job.cancel`` of a queued job: ``set()`` asks whichever worker runs it to stop."""

    def __init__(self, manager: RedisJobManager, job_id: str) -> None:
        self.manager, self.job_id = manager, job_id

    def set(self) -> None:
        self.manager.cancel(self.job_id)

    def is_set(self) -> bool:
        return self.manager.guarded(lambda: self.manager.store.cancel_requested(self.job_id))


class RedisJob:
    """A live view of one job in Redis, with the attributes the server reads from ``api.jobs.Job``."""

    def __init__(self, manager: RedisJobManager, job_id: str, record: dict[str, str]) -> None:
        self.manager = manager
        self.id = job_id
        spec = spec_from_json(json.loads(record["spec"]))
        self.problem: Problem = spec["problem"]
        self.planner: str = spec["planner"]
        self.params: dict[str, Any] = spec["params"]
        self.budget: Budget = spec["budget"]
        self.include_tree: bool = spec["include_tree"]
        self.evaluate_hidden: bool = spec["evaluate_hidden"]
        self.prompt_style: str = spec["prompt_style"]
        self.created = float(record.get("created") or 0.0)
        self.cancel = RemoteCancel(manager, job_id)
        self.future: Future[None] | None = None
        self._record = record
        self._terminal: dict[str, str] | None = record if record.get("status") in TERMINAL else None

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

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

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
    def result(self) -> dict[str, Any] | None:
        raw = self._fresh().get("result")
        return json.loads(raw) if raw else None

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

    def summary(self) -> dict[str, Any]:
        rec = self._fresh()
        out: dict[str, Any] = {
            "id": self.id,
            "status": rec.get("status", "queued"),
            "planner": self.planner,
            "problem_id": self.problem.id,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "events": self.manager.guarded(lambda: self.manager.store.event_count(self.id)),
            "attempts": self.attempts,
            "worker": rec.get("worker"),
        }
        result = self.result
        if result is not None:
            out["result"] = {k: v for k, v in result.items() if k != "tree"}
        if self.error is not None:
            out["error"] = self.error
            if self.error_id:
                out["error_id"] = self.error_id
        return out


class RedisJobManager:
    """Jobs on an RQ queue in Redis; the interface of ``api.jobs.JobManager``."""

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

    def submit_many(self, specs: list[dict[str, Any]]) -> list[RedisJob]:
        """Enqueue all of them or none (QueueFull when the queue holds ``capacity`` jobs)."""
        from rq import Callback, Queue, Retry

        waiting = int(self.guarded(lambda: self.queue.count))
        if waiting + len(specs) > self.capacity:
            raise QueueFull(f"{waiting} searches waiting in the queue (capacity {self.capacity})")
        now = time.time()
        ids = ["job-" + uuid.uuid4().hex[:16] for _ in specs]
        payloads = [spec_to_json(s) for s in specs]
        retry = Retry(max=self.retries) if self.retries else None
        datas = [
            Queue.prepare_data(
                "api.worker.run_job",
                args=(job_id,),
                job_id=job_id,
                retry=retry,
                timeout=self._job_timeout(s["budget"]),
                result_ttl=self.store.result_ttl,
                failure_ttl=self.store.result_ttl,
                on_failure=Callback("api.worker.on_job_failure"),
                meta={"treedec_prefix": self.store.prefix},
                description=f"{s['planner']} on {s['problem'].id}",
            )
            for job_id, s in zip(ids, specs, strict=True)
        ]

        def enqueue() -> None:
            with self.client.pipeline() as pipe:
                for job_id, payload in zip(ids, payloads, strict=True):
                    self.store.create(job_id, payload, now, pipe)
                pipe.execute()
            self.queue.enqueue_many(datas)

        self.guarded(enqueue)
        records = {
            job_id: {"spec": json.dumps(p), "status": "queued", "created": str(now), "attempts": "0"}
            for job_id, p in zip(ids, payloads, strict=True)
        }
        jobs = [RedisJob(self, job_id, records[job_id]) for job_id in ids]
        with self._lock:
            for job in jobs:
                job.future = Future()
                self._watched[job.id] = job
        return jobs

    def submit(self, **spec: Any) -> RedisJob:
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
        rq_status = _text(raw) if raw is not None else None
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


def create_queued_app(engine: Any, queue_url: str, settings: Any = None, **manager_kwargs: Any) -> Any:
    """The REST app with jobs on the Redis queue at ``queue_url``: searches run on ``treedec worker``
    processes, not here, so the app neither batches nor loads the model for them (the OpenAI
    routes load it lazily, for their tokenizer, when first called)."""
    from api.schemas import ServerSettings
    from api.server import create_app

    settings = (settings or ServerSettings()).model_copy(update={"batch_window_ms": None})
    manager = RedisJobManager.connect(queue_url, **manager_kwargs)
    return create_app(engine, settings, jobs=manager)


def serve_queued(
    host: str,
    port: int,
    queue_url: str,
    model: str,
    cache: str | None = None,
    settings: Any = None,
    device: str = "auto",
    dtype: str = "auto",
    max_queued: int = 1000,
) -> None:
    """``treedec serve --queue redis://...``: an API replica in front of the queue."""
    import uvicorn

    from api.engine import Engine

    engine = Engine(model_spec=model, cache_spec=cache, device=device, dtype=dtype)
    app = create_queued_app(engine, queue_url, settings, max_queued=max_queued)
    uvicorn.run(app, host=host, port=port, log_level="info")
