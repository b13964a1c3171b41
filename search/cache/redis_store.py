"""Redis backend of the partial-state cache, shared by every worker of a deployment.

One round trip per batch: ``get_many`` is one ``MGET``, ``set_many`` is one pipeline of
``SET ... PX``. Keys are ``{prefix}:v{CACHE_FORMAT_VERSION}:{namespace}:{key}``; the prefix
separates deployments sharing a server (``?prefix=`` in the URL, else ``$TREEDEC_CACHE_PREFIX``,
else ``treedec``).

Every value is framed so that an entry this code did not write (another program, a truncated
write, an older frame format) is a miss, never a wrong result::

    4 bytes  magic  b"TDCE"
    1 byte   frame version (1)
    8 bytes  blake2b-64 checksum of the payload
    n bytes  payload (the bytes the caller stored; see search/cache/codec.py)

Failure policy, so a cache never breaks a search:

- unreachable at ``connect`` -> ``CacheConfigError`` with a one-line message;
- any Redis error later -> one warning on ``treedec.cache``, then this instance serves from an
  internal ``MemoryCache`` for the rest of its life (``degraded`` is True, ``stats.errors``
  counts the failure);
- ``OOM`` on SET (maxmemory reached with ``noeviction``, or nothing left to evict) -> one warning,
  those entries are not stored, reads go on;
- evicted or expired entries are plain misses.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from typing import cast
from urllib.parse import parse_qsl, urlencode

import redis
from redis.backoff import NoBackoff
from redis.exceptions import OutOfMemoryError, RedisError
from redis.retry import Retry

from search.cache.store import (
    CACHE_FORMAT_VERSION,
    DEFAULT_MEMORY_BYTES,
    CacheConfigError,
    CacheStats,
    MemoryCache,
)

logger = logging.getLogger("treedec.cache")

DEFAULT_PREFIX = "treedec"
PREFIX_ENV = "TREEDEC_CACHE_PREFIX"
CONNECT_TIMEOUT_S = 1.0
OP_TIMEOUT_S = 2.0

FRAME_MAGIC = b"TDCE"
FRAME_VERSION = 1
_CHECKSUM_BYTES = 8
_HEADER_BYTES = len(FRAME_MAGIC) + 1 + _CHECKSUM_BYTES
_FRAME_HEAD = FRAME_MAGIC + bytes([FRAME_VERSION])
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def _checksum(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_CHECKSUM_BYTES).digest()


def frame(payload: bytes) -> bytes:
    """Wrap ``payload`` in the stored-entry frame.

    >>> unframe(frame(b"abc"))
    b'abc'
    """
    return _FRAME_HEAD + _checksum(payload) + payload


def unframe(raw: bytes) -> bytes | None:
    """The payload of a framed entry, or None if ``raw`` is not an intact entry of this format.

    >>> unframe(b"written by someone else") is None
    True
    """
    if len(raw) < _HEADER_BYTES or not raw.startswith(_FRAME_HEAD):
        return None
    payload = raw[_HEADER_BYTES:]
    if raw[len(_FRAME_HEAD) : _HEADER_BYTES] != _checksum(payload):
        return None
    return payload


def _reason(exc: BaseException) -> str:
    """'Connection refused', 'timed out', ... rather than redis-py's full sentence."""
    for inner in (exc.__cause__, exc.__context__):
        if isinstance(inner, OSError) and inner.strerror:
            return inner.strerror
        if isinstance(inner, OSError) and str(inner):
            return str(inner)
    return str(exc).rstrip(".") or type(exc).__name__


def _split_prefix(url: str) -> tuple[str, str | None]:
    """Remove ``prefix=`` from the URL's query (redis-py would reject it) and return it."""
    base, _, query_string = url.partition("?")
    query = parse_qsl(query_string, keep_blank_values=True)
    prefixes = [v for k, v in query if k == "prefix"]
    if not prefixes:
        return url, None
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return (f"{base}?{rest}" if rest else base), prefixes[-1]


def _check_prefix(prefix: str) -> None:
    if not _PREFIX_RE.fullmatch(prefix):
        raise CacheConfigError(
            f"invalid cache prefix {prefix!r}: use 1-64 characters from letters, digits and _ . : -"
        )


def _display_url(client: redis.Redis) -> str:
    """``redis://host:port/db`` (or ``unix://path``) without credentials."""
    kw = client.connection_pool.connection_kwargs
    if kw.get("path"):
        return f"unix://{kw['path']}" + (f"?db={kw['db']}" if kw.get("db") else "")
    scheme = "rediss" if client.connection_pool.connection_class.__name__ == "SSLConnection" else "redis"
    return f"{scheme}://{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"


class RedisCache:
    """A ``Cache`` on a Redis server; open it with ``RedisCache.connect(url)``.

    Thread-safe: redis-py's connection pool serves concurrent calls.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
    ) -> None:
        _check_prefix(prefix)
        self.stats = CacheStats()
        self.corrupt = 0  # entries present but not intact (foreign, truncated); counted as misses
        self.prefix = prefix
        self._client = client
        self._url = url
        self._memory_bytes = memory_bytes
        self._fallback: MemoryCache | None = None
        self._lock = threading.Lock()
        self._oom_warned = False

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        prefix: str | None = None,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        op_timeout: float = OP_TIMEOUT_S,
    ) -> RedisCache:
        """Connect to ``url`` and PING it once; raise ``CacheConfigError`` if that fails.

        The prefix is, in order: ``prefix``, ``?prefix=`` in the URL, ``$TREEDEC_CACHE_PREFIX``,
        ``treedec``.
        """
        redis_url, url_prefix = _split_prefix(url)
        chosen = prefix or url_prefix or os.environ.get(PREFIX_ENV) or DEFAULT_PREFIX
        _check_prefix(chosen)
        try:
            client = redis.Redis.from_url(
                redis_url,
                socket_connect_timeout=connect_timeout,
                socket_timeout=op_timeout,
                retry=Retry(NoBackoff(), 0),  # the PING below is tried once
            )
        except ValueError as exc:
            raise CacheConfigError(f"invalid Redis URL {url!r}: {exc}") from None
        shown = _display_url(client)
        try:
            client.ping()
        except RedisError as exc:
            client.close()
            raise CacheConfigError(
                f"cannot reach Redis at {shown} ({_reason(exc)}): start redis-server or use --cache memory"
            ) from None
        # One immediate retry covers a pooled connection the server closed while idle;
        # a lost server costs at most two timeouts before the instance degrades.
        client.set_retry(Retry(NoBackoff(), 1))
        return cls(client, url=shown, prefix=chosen, memory_bytes=memory_bytes)

    @property
    def url(self) -> str:
        return self._url

    @property
    def degraded(self) -> bool:
        """True once a Redis error moved this instance to its in-memory fallback."""
        return self._fallback is not None

    def full_key(self, namespace: str, key: str) -> str:
        return f"{self.prefix}:v{CACHE_FORMAT_VERSION}:{namespace}:{key}"

    def get_many(self, namespace: str, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        fallback = self._fallback
        if fallback is None:
            try:
                raw = cast(
                    "list[bytes | None]", self._client.mget([self.full_key(namespace, k) for k in keys])
                )
            except (RedisError, OSError) as exc:
                fallback = self._degrade(exc, "MGET")
            else:
                return self._count(self._unframe_all(raw))
        return self._count(fallback.get_many(namespace, keys))

    def set_many(self, namespace: str, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        if not items:
            return
        fallback = self._fallback
        if fallback is None:
            try:
                results = self._pipeline_set(namespace, items, ttl)
            except (RedisError, OSError) as exc:
                fallback = self._degrade(exc, "SET")
            else:
                self._record_set_results(results)
                return
        fallback.set_many(namespace, items, ttl=ttl)
        with self._lock:
            self.stats.sets += len(items)

    def _pipeline_set(self, namespace: str, items: Mapping[str, bytes], ttl: float | None) -> list[object]:
        px = max(1, round(ttl * 1000)) if ttl else None  # like MemoryCache: no ttl or 0 = never expires
        pipe = self._client.pipeline(transaction=False)
        for key, value in items.items():
            pipe.set(self.full_key(namespace, key), frame(value), px=px)
        results: list[object] = pipe.execute(raise_on_error=False)
        for result in results:
            if isinstance(result, RedisError) and not isinstance(result, OutOfMemoryError):
                raise result
        return results

    def _record_set_results(self, results: list[object]) -> None:
        stored = sum(1 for r in results if not isinstance(r, OutOfMemoryError))
        oom = len(results) - stored
        with self._lock:
            self.stats.sets += stored
            if oom:
                self.stats.errors += 1
            warn = oom and not self._oom_warned
            self._oom_warned = self._oom_warned or bool(oom)
        if warn:
            logger.warning(
                "Redis at %s refuses writes (OOM: maxmemory reached and nothing it may evict): %d cache "
                "entries not stored; reads go on. Raise maxmemory or set maxmemory-policy allkeys-lru.",
                self._url,
                oom,
            )

    def _unframe_all(self, raw: Sequence[bytes | None]) -> list[bytes | None]:
        out = [None if value is None else unframe(value) for value in raw]
        bad = sum(1 for value, payload in zip(raw, out, strict=True) if value is not None and payload is None)
        if bad:
            with self._lock:
                self.corrupt += bad
        return out

    def _count(self, values: list[bytes | None]) -> list[bytes | None]:
        misses = values.count(None)
        with self._lock:
            self.stats.misses += misses
            self.stats.hits += len(values) - misses
        return values

    def _degrade(self, exc: BaseException, op: str) -> MemoryCache:
        """Switch to the in-memory fallback (once); warn once; count the failure."""
        with self._lock:
            self.stats.errors += 1
            if self._fallback is not None:
                return self._fallback
            fallback = self._fallback = MemoryCache(max_bytes=self._memory_bytes)
        logger.warning(
            "Redis cache at %s failed during %s (%s); this process continues with an in-memory cache",
            self._url,
            op,
            _reason(exc),
        )
        self._client.close()
        return fallback

    def close(self) -> None:
        self._client.close()
        if self._fallback is not None:
            self._fallback.clear()

    def __repr__(self) -> str:
        state = " degraded" if self.degraded else ""
        return f"RedisCache({self._url!r}, prefix={self.prefix!r}{state})"
