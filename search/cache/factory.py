"""Open the partial-state cache a setting names: ``memory`` (the embedded default) or a Redis URL.

It sits above both backends (``search/cache/store.py``, ``search/cache/redis_store.py``) so
neither imports the other to be chosen; redis-py is imported only when a Redis URL is asked for.
"""

from __future__ import annotations

import os

from search.cache.store import DEFAULT_MEMORY_BYTES, Cache, CacheConfigError, MemoryCache


def open_cache(spec: str | None = None, *, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> Cache:
    """Open the cache named by ``spec`` (or ``$TREEDEC_CACHE``): ``memory`` or ``redis://host:port/db``."""
    spec = spec or os.environ.get("TREEDEC_CACHE") or "memory"
    if spec == "memory":
        return MemoryCache(max_bytes=memory_bytes)
    if spec.startswith(("redis://", "rediss://", "unix://")):
        from search.cache.redis_store import RedisCache

        return RedisCache.connect(spec, memory_bytes=memory_bytes)
    raise CacheConfigError(f"unknown cache {spec!r}: use 'memory' or 'redis://host:port/db'")
