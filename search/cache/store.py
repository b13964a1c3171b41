"""Partial-state cache: next-token distributions, deterministic rollouts and execution results.

Every backend stores **bytes** under ``(namespace, key)``; what the bytes mean is decided by the
codecs in ``search/cache/codec.py``, never by pickle, so reading a cache entry can never execute code.
The in-memory backend is the embedded default; ``search/cache/redis_store.py`` shares work between
processes. ``search.cache.factory.open_cache("memory" | "redis://host:port/db")`` picks one.

Keys are built by callers from everything that determines the value (model identity, token-id
prefix hash, settings) with ``cache_key``; backends add a format version so a format change never
reads stale data.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

CACHE_FORMAT_VERSION = 1
DEFAULT_MEMORY_BYTES = 256 * 1024 * 1024

# Namespaces used across the engine, so keys of different kinds never collide.
NS_NEXT_TOKEN = "ntd"
NS_ROLLOUT = "roll"
NS_EXECUTION = "exec"
NS_SCORE = "score"


@dataclass
class CacheStats:
    """Hit/miss counters; a search adds these to its spend."""

    hits: int = 0
    misses: int = 0
    sets: int = 0
    errors: int = 0

    def add(self, other: CacheStats) -> None:
        self.hits += other.hits
        self.misses += other.misses
        self.sets += other.sets
        self.errors += other.errors

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


@runtime_checkable
class Cache(Protocol):
    """Batched byte store with namespaces and optional TTL."""

    stats: CacheStats

    @property
    def url(self) -> str: ...

    def get_many(self, namespace: str, keys: Sequence[str]) -> list[bytes | None]: ...

    def set_many(self, namespace: str, items: Mapping[str, bytes], ttl: float | None = None) -> None: ...

    def close(self) -> None: ...


def cache_key(*parts: object) -> str:
    """A short stable key from the parts that determine a value.

    >>> cache_key("qwen", (1, 2, 3), 5) == cache_key("qwen", (1, 2, 3), 5)
    True
    """
    h = hashlib.blake2b(digest_size=20)
    for part in parts:
        if isinstance(part, (list, tuple)) and all(isinstance(x, int) for x in part):
            h.update(b"ints:")
            h.update(",".join(map(str, part)).encode())
        else:
            h.update(repr(part).encode())
        h.update(b"\x00")
    return h.hexdigest()


@dataclass
class _Entry:
    value: bytes
    expires_at: float | None


@dataclass
class MemoryCache:
    """An LRU cache bounded in bytes (keys + values), safe to share between threads.

    >>> c = MemoryCache(max_bytes=1000)
    >>> c.set_many("ns", {"a": b"xyz"})
    >>> c.get_many("ns", ["a", "b"])
    [b'xyz', None]
    >>> (c.stats.hits, c.stats.misses)
    (1, 1)
    """

    max_bytes: int = DEFAULT_MEMORY_BYTES
    stats: CacheStats = field(default_factory=CacheStats)
    _data: OrderedDict[tuple[str, str], _Entry] = field(default_factory=OrderedDict, repr=False)
    _bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def url(self) -> str:
        return "memory"

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._data)

    @staticmethod
    def _cost(key: tuple[str, str], value: bytes) -> int:
        return len(key[0]) + len(key[1]) + len(value) + 64

    def get_many(self, namespace: str, keys: Sequence[str]) -> list[bytes | None]:
        import time

        now = time.monotonic()
        out: list[bytes | None] = []
        with self._lock:
            for key in keys:
                full = (namespace, key)
                entry = self._data.get(full)
                if entry is not None and entry.expires_at is not None and entry.expires_at < now:
                    self._remove(full)
                    entry = None
                if entry is None:
                    self.stats.misses += 1
                    out.append(None)
                else:
                    self._data.move_to_end(full)
                    self.stats.hits += 1
                    out.append(entry.value)
        return out

    def set_many(self, namespace: str, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        import time

        expires = time.monotonic() + ttl if ttl else None
        with self._lock:
            for key, value in items.items():
                full = (namespace, key)
                cost = self._cost(full, value)
                if cost > self.max_bytes:
                    continue
                if full in self._data:
                    self._remove(full)
                self._data[full] = _Entry(value, expires)
                self._bytes += cost
                self.stats.sets += 1
            while self._bytes > self.max_bytes and self._data:
                oldest = next(iter(self._data))
                self._remove(oldest)

    def _remove(self, full: tuple[str, str]) -> None:
        entry = self._data.pop(full)
        self._bytes -= self._cost(full, entry.value)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def close(self) -> None:
        return None


class CacheConfigError(ValueError):
    """The cache setting names something that cannot be used (bad URL, unreachable server)."""
