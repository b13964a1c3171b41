"""Job records, events and cancel flags in Redis (``JobStore``), used by API replicas and workers
alike.

Redis keys (``{p}`` is the prefix, default ``treedec``; all expire):

- ``{p}:job:{id}``         hash: ``spec`` (JSON), ``status``, ``created`` / ``started`` /
  ``finished``, ``result`` (JSON), ``error``, ``error_id``, ``attempts``, ``worker``;
- ``{p}:job:{id}:events``  list of JSON progress events, appended by the worker running the job
  (``/v1/jobs/{id}/events`` reads it from any replica; ``seq`` is the index in the list);
- ``{p}:job:{id}:cancel``  present when a cancel was asked (the worker polls it).

Finishing is one Lua script (``JobStore.finish``): the first terminal status wins and later ones
are ignored, so a job that was run twice (a worker presumed dead that was only slow) still has
one result. What a record's fields hold is ``api/jobs/queue_codec.py``.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from api.core.contracts import SolveReport, SolveSpec, terminal_event
from api.core.errors import APIError
from api.jobs.backend import admits_event
from api.jobs.queue_codec import decode_events, decode_record, encode_event, encode_result, encode_spec, text

DEFAULT_PREFIX = "treedec"
RESULT_TTL_S = 24 * 3600  # finished jobs (record, events, result) are kept this long
PENDING_TTL_S = 7 * 24 * 3600  # a queued or running job's record outlives any sane queue wait

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

    @staticmethod
    def new_record(spec: SolveSpec, created: float) -> dict[str, Any]:
        """The hash of a job just enqueued."""
        return {"spec": encode_spec(spec), "status": "queued", "created": created, "attempts": 0}

    def create(self, job_id: str, spec: SolveSpec, created: float, pipe: Any) -> None:
        pipe.hset(self.key(job_id), mapping=self.new_record(spec, created))
        pipe.expire(self.key(job_id), PENDING_TTL_S)

    def record(self, job_id: str) -> dict[str, str] | None:
        raw = self.r.hgetall(self.key(job_id))
        if not raw:
            return None
        return decode_record(raw)

    def field(self, job_id: str, name: str) -> str | None:
        value = self.r.hget(self.key(job_id), name)
        return text(value) if value is not None else None

    def emit(self, job_id: str, created: float, event: dict[str, Any]) -> None:
        """Append one progress event (bounded: past MAX_EVENTS only terminal ones go in)."""
        key = self.key(job_id, "events")
        if not admits_event(event, lambda: int(self.r.llen(key))):
            self.r.hincrby(self.key(job_id), "dropped_events", 1)
            return
        with self.r.pipeline() as pipe:
            pipe.rpush(key, encode_event(event, created))
            pipe.expire(key, PENDING_TTL_S)
            pipe.execute()

    def events(self, job_id: str, start: int) -> list[dict[str, Any]]:
        return decode_events(self.r.lrange(self.key(job_id, "events"), start, -1), start)

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
        result: SolveReport | None = None,
        error: str | None = None,
        error_id: str | None = None,
    ) -> bool:
        """Set the terminal status (first one wins) with its event; True if this call set it."""
        event = terminal_event(status, result, error, error_id)
        created = float(self.field(job_id, "created") or time.time())
        keys = [self.key(job_id), self.key(job_id, "events"), self.key(job_id, "cancel")]
        args: list[str | float | int] = [
            status,
            encode_event(event, created),
            time.time(),
            encode_result(result),
            error or "",
            error_id or "",
            self.result_ttl,
        ]
        return int(self._finish(keys=keys, args=args)) == 1

    def request_cancel(self, job_id: str) -> None:
        self.r.set(self.key(job_id, "cancel"), 1, ex=PENDING_TTL_S)

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.r.exists(self.key(job_id, "cancel")))
