"""Cost of one cached lookup through Redis, to weigh against a forward pass.

Starts its own redis-server on a free loopback port, stores framed next-token distributions of a
realistic size (top-k = 20, see search/cache/codec.py), and times ``get_many`` of 1 and of 32 keys and
``set_many`` of 32 keys. Prints JSON: microseconds per call and per key (median and p90 over the
repeats), plus the in-memory cache for reference.

    python bench/cache_roundtrip.py [--repeats 2000] [--top-k 20] [--out bench/results/cache_roundtrip.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from search.cache.codec import encode_next_token  # noqa: E402
from search.cache.redis_store import RedisCache, frame  # noqa: E402
from search.cache.store import Cache, MemoryCache, cache_key  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402


def _timed(fn: Callable[[], object], repeats: int) -> list[float]:
    for _ in range(min(50, repeats)):  # warm up connections and allocators
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1000.0)
    return out


def _summary(samples_us: list[float], keys: int) -> dict[str, float]:
    samples = sorted(samples_us)
    median = statistics.median(samples)
    return {
        "keys_per_call": keys,
        "us_per_call_median": round(median, 1),
        "us_per_call_p90": round(samples[int(0.9 * (len(samples) - 1))], 1),
        "us_per_key_median": round(median / keys, 2),
    }


def measure(cache: Cache, repeats: int, top_k: int) -> dict[str, dict[str, float]]:
    value = encode_next_token(list(range(top_k)), [-float(i) for i in range(top_k)], 1.5)
    keys = [cache_key("bench-model", tuple(range(i, i + 64))) for i in range(32)]
    cache.set_many("ntd", {k: value for k in keys})
    one = keys[:1]
    results = {
        "get_many_1": _summary(_timed(lambda: cache.get_many("ntd", one), repeats), 1),
        "get_many_32": _summary(_timed(lambda: cache.get_many("ntd", keys), repeats), 32),
        "set_many_32": _summary(_timed(lambda: cache.set_many("ntd", {k: value for k in keys}), repeats), 32),
    }
    assert cache.get_many("ntd", one) == [value]
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)

    server = RedisServer.start()
    try:
        redis_cache = RedisCache.connect(server.url, prefix="bench")
        with server.client() as raw:
            version = raw.info("server")["redis_version"]
        report = {
            "benchmark": "cache_roundtrip",
            "transport": "TCP loopback, same machine",
            "redis_version": version,
            "python": platform.python_version(),
            "stored_value_bytes": len(frame(encode_next_token([0] * args.top_k, [0.0] * args.top_k, 0.0))),
            "repeats": args.repeats,
            "redis": measure(redis_cache, args.repeats, args.top_k),
            "memory": measure(MemoryCache(), args.repeats, args.top_k),
        }
        redis_cache.close()
    finally:
        server.stop()
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
