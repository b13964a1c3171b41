"""RedisCache against a real redis-server: batching, framing, TTL, and every way Redis can fail."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import redis.connection

from search.cache.factory import open_cache
from search.cache.redis_store import RedisCache, _split_prefix, frame, unframe
from search.cache.store import Cache, CacheConfigError

if TYPE_CHECKING:
    from tests.redis_server import RedisServer, free_port
else:
    try:
        from tests.redis_server import free_port
    except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
        from redis_server import free_port

pytestmark = pytest.mark.redis


@pytest.fixture
def cache(redis_server: RedisServer) -> Iterator[RedisCache]:
    c = RedisCache.connect(redis_server.url)
    yield c
    c.close()


def _value(key: str, size: int = 64) -> bytes:
    """A value that can only be the one set for ``key``."""
    seed = hashlib.blake2b(key.encode(), digest_size=32).digest()
    return (seed * (size // 32 + 1))[:size]


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "treedec.cache" and r.levelno == logging.WARNING]


class _SendCounter:
    """Counts client->server writes (one per round trip) by wrapping redis-py's socket send."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = redis.connection.AbstractConnection.send_packed_command

        def counting(conn: object, command: object, check_health: bool = True) -> None:
            self.calls += 1
            original(conn, command, check_health)  # type: ignore[arg-type]

        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)


# --- basics -----------------------------------------------------------------------------------


def test_round_trip_keeps_namespaces_apart(cache: RedisCache):
    cache.set_many("ntd", {"k1": b"dist", "k2": b""})
    cache.set_many("exec", {"k1": b"result"})
    assert cache.get_many("ntd", ["k1", "k2", "k3"]) == [b"dist", b"", None]
    assert cache.get_many("exec", ["k1", "k2"]) == [b"result", None]
    assert (cache.stats.hits, cache.stats.misses, cache.stats.sets) == (3, 2, 3)
    assert isinstance(cache, Cache) and not cache.degraded


def test_keys_carry_prefix_format_version_and_namespace(cache: RedisCache, redis_server: RedisServer):
    cache.set_many("ntd", {"abc": b"v"})
    with redis_server.client() as raw:
        assert raw.keys("*") == [b"treedec:v1:ntd:abc"]
        assert unframe(raw.get("treedec:v1:ntd:abc")) == b"v"


def test_prefix_from_url_query_or_environment_separates_deployments(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
):
    a = RedisCache.connect(redis_server.url + "?prefix=teamA")
    monkeypatch.setenv("TREEDEC_CACHE_PREFIX", "teamB")
    b = open_cache(redis_server.url)
    assert isinstance(b, RedisCache) and (a.prefix, b.prefix) == ("teamA", "teamB")
    a.set_many("ns", {"k": b"from A"})
    assert b.get_many("ns", ["k"]) == [None]
    assert a.get_many("ns", ["k"]) == [b"from A"]
    with redis_server.client() as raw:
        assert raw.keys("*") == [b"teamA:v1:ns:k"]
    a.close()
    b.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://h:1/0", ("redis://h:1/0", None)),
        ("redis://h:1/0?prefix=p", ("redis://h:1/0", "p")),
        ("redis://h:1/0?socket_timeout=3&prefix=p", ("redis://h:1/0?socket_timeout=3", "p")),
        ("unix:///run/redis.sock?db=1&prefix=p", ("unix:///run/redis.sock?db=1", "p")),
    ],
)
def test_prefix_is_taken_out_of_the_url_query(url, expected):
    assert _split_prefix(url) == expected


def test_invalid_prefix_or_url_is_a_config_error(redis_server: RedisServer):
    with pytest.raises(CacheConfigError, match="invalid cache prefix"):
        RedisCache.connect(redis_server.url + "?prefix=has space")
    with pytest.raises(CacheConfigError, match="invalid Redis URL"):
        RedisCache.connect("redis://127.0.0.1:notaport/0")


def test_two_instances_share_entries_like_two_processes(redis_server: RedisServer):
    a = RedisCache.connect(redis_server.url)
    b = RedisCache.connect(redis_server.url)
    a.set_many("roll", {"p1": b"rollout-a"})
    b.set_many("roll", {"p2": b"rollout-b"})
    assert b.get_many("roll", ["p1", "p2"]) == [b"rollout-a", b"rollout-b"]
    assert a.get_many("roll", ["p2"]) == [b"rollout-b"]
    with redis_server.client() as raw:
        assert len(raw.client_list()) >= 3  # a, b and this one: separate connections
    a.close()
    b.close()


def test_ttl_really_expires_in_redis(cache: RedisCache, redis_server: RedisServer):
    cache.set_many("ns", {"short": b"s"}, ttl=0.5)
    cache.set_many("ns", {"forever": b"f"})
    with redis_server.client() as raw:
        assert 0 < raw.pttl(cache.full_key("ns", "short")) <= 500
        assert raw.pttl(cache.full_key("ns", "forever")) == -1
    assert cache.get_many("ns", ["short", "forever"]) == [b"s", b"f"]
    time.sleep(0.65)
    assert cache.get_many("ns", ["short", "forever"]) == [None, b"f"]


def test_batches_are_one_round_trip(cache: RedisCache, redis_server: RedisServer, monkeypatch):
    cache.get_many("ns", ["warm-up"])  # the connection handshake is not part of the batch
    redis_server.config_set("maxmemory", 0)
    with redis_server.client() as raw:
        raw.config_resetstat()
    sends = _SendCounter(monkeypatch)
    keys = [f"k{i}" for i in range(32)]
    cache.set_many("ns", {k: _value(k) for k in keys}, ttl=60)
    assert sends.calls == 1
    assert cache.get_many("ns", keys) == [_value(k) for k in keys]
    assert sends.calls == 2
    calls = redis_server.command_calls()
    assert calls.get("mget") == 1 and "get" not in calls
    assert calls.get("set") == 32


def test_empty_batches_do_not_touch_redis(cache: RedisCache, monkeypatch):
    sends = _SendCounter(monkeypatch)
    assert cache.get_many("ns", []) == []
    cache.set_many("ns", {})
    assert sends.calls == 0


def test_concurrent_threads_share_one_instance(cache: RedisCache):
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(50):
                key = f"t{t}-{i}"
                cache.set_many("ns", {key: _value(key)})
                assert cache.get_many("ns", [key]) == [_value(key)]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert (cache.stats.hits, cache.stats.sets) == (200, 200)


# --- framing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw_value",
    [
        b"written by another program",
        frame(b"payload")[:-1],  # truncated
        frame(b"payload")[:-1] + b"X",  # payload changed under the checksum
        b"TDCE\x02" + frame(b"payload")[5:],  # a future frame version
        b"",
    ],
    ids=["foreign", "truncated", "bit-rot", "other-version", "empty"],
)
def test_corrupted_entry_is_a_miss_then_overwritten(cache: RedisCache, redis_server: RedisServer, raw_value):
    with redis_server.client() as raw:
        raw.set(cache.full_key("ns", "k"), raw_value)
    assert cache.get_many("ns", ["k"]) == [None]
    assert (cache.stats.misses, cache.corrupt, cache.degraded) == (1, 1, False)
    cache.set_many("ns", {"k": b"payload"})
    assert cache.get_many("ns", ["k"]) == [b"payload"]


# --- unreachable / lost -----------------------------------------------------------------------


def test_unreachable_at_start_is_a_one_line_config_error():
    port = free_port()  # nothing listens there
    with pytest.raises(CacheConfigError) as info:
        open_cache(f"redis://127.0.0.1:{port}/0")
    assert str(info.value) == (
        f"cannot reach Redis at redis://127.0.0.1:{port}/0 (Connection refused): "
        "start redis-server or use --cache memory"
    )


def test_unreachable_message_names_db_and_hides_password():
    port = free_port()
    with pytest.raises(CacheConfigError) as info:
        RedisCache.connect(f"redis://:secret@127.0.0.1:{port}/3?prefix=x")
    assert str(info.value).startswith(f"cannot reach Redis at redis://127.0.0.1:{port}/3 (")
    assert "secret" not in str(info.value) and "\n" not in str(info.value)


def test_server_killed_mid_use_degrades_to_memory_with_one_warning(
    cache: RedisCache, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
):
    cache.set_many("ns", {"before": b"1"})
    assert cache.get_many("ns", ["before"]) == [b"1"]
    redis_server.kill()
    caplog.set_level(logging.WARNING, logger="treedec.cache")
    started = time.monotonic()
    assert cache.get_many("ns", ["before"]) == [None]  # lost with the server: a miss, not an error
    assert cache.degraded and cache.stats.errors == 1
    cache.set_many("ns", {"after": b"2"}, ttl=60)
    assert cache.get_many("ns", ["after", "before"]) == [b"2", None]
    redis_server.restart()  # permanent for this instance: it does not flip back mid-search
    cache.set_many("ns", {"later": b"3"})
    assert cache.get_many("ns", ["later"]) == [b"3"]
    assert time.monotonic() - started < 5
    assert len(_warnings(caplog)) == 1
    assert "continues with an in-memory cache" in _warnings(caplog)[0].getMessage()
    assert cache.stats.errors == 1 and cache.stats.hits == 3
    with redis_server.client() as raw:
        assert raw.dbsize() == 0


def test_server_lost_during_a_set_keeps_those_values_in_memory(
    cache: RedisCache, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
):
    cache.get_many("ns", ["warm-up"])
    redis_server.kill()
    cache.set_many("ns", {"a": b"1", "b": b"2"})
    assert cache.degraded
    assert cache.get_many("ns", ["a", "b"]) == [b"1", b"2"]
    assert len(_warnings(caplog)) == 1


def test_hung_server_times_out_instead_of_hanging_the_search(redis_server: RedisServer, caplog):
    c = RedisCache.connect(redis_server.url, op_timeout=0.3)
    c.set_many("ns", {"k": b"v"})
    redis_server.pause()
    try:
        started = time.monotonic()
        assert c.get_many("ns", ["k"]) == [None]
        elapsed = time.monotonic() - started
    finally:
        redis_server.resume()
    assert c.degraded and elapsed < 2.0
    assert len(_warnings(caplog)) == 1
    c.close()


# --- maxmemory --------------------------------------------------------------------------------


@pytest.mark.parametrize("headroom", ["1mb-absolute", "1mb-above-baseline"])
def test_maxmemory_with_lru_eviction_stays_correct(
    cache: RedisCache, redis_server: RedisServer, headroom: str
):
    """Entries vanish under allkeys-lru; every hit is still exactly the value that was set."""
    with redis_server.client() as raw:
        baseline = int(raw.info("memory")["used_memory"])
    limit = 1024 * 1024 if headroom == "1mb-absolute" else baseline + 1024 * 1024
    redis_server.config_set("maxmemory", limit)
    redis_server.config_set("maxmemory-policy", "allkeys-lru")
    keys = [f"k{i}" for i in range(2000)]  # ~4 MB of values
    for start in range(0, len(keys), 100):
        batch = keys[start : start + 100]
        cache.set_many("ns", {k: _value(k, 2048) for k in batch})
    got = cache.get_many("ns", keys)
    hits = [(k, v) for k, v in zip(keys, got, strict=True) if v is not None]
    assert all(v == _value(k, 2048) for k, v in hits)
    assert len(hits) < len(keys) and not cache.degraded
    if headroom == "1mb-above-baseline":
        with redis_server.client() as raw:
            assert int(raw.info("stats")["evicted_keys"]) > 0
        assert len(hits) > 100  # about 1 MB worth survives (which ones is Redis's sampled choice)


def test_maxmemory_with_noeviction_fails_sets_softly(
    cache: RedisCache, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
):
    cache.set_many("ns", {"early": b"kept"})
    with redis_server.client() as raw:
        used = int(raw.info("memory")["used_memory"])
    redis_server.config_set("maxmemory", used + 256 * 1024)
    redis_server.config_set("maxmemory-policy", "noeviction")
    keys = [f"k{i}" for i in range(1000)]  # ~2 MB: must overflow
    for start in range(0, len(keys), 100):
        batch = keys[start : start + 100]
        cache.set_many("ns", {k: _value(k, 2048) for k in batch})
    assert not cache.degraded
    assert cache.stats.errors >= 1 and cache.stats.sets < len(keys) + 1
    got = cache.get_many("ns", ["early", *keys])
    assert got[0] == b"kept"
    assert all(v == _value(k, 2048) for k, v in zip(keys, got[1:], strict=True) if v is not None)
    assert any(v is None for v in got[1:])
    oom = _warnings(caplog)
    assert len(oom) == 1 and "OOM" in oom[0].getMessage()


def test_many_threads_losing_the_server_at_once_warn_once(
    cache: RedisCache, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
):
    cache.get_many("ns", ["warm-up"])
    redis_server.kill()
    barrier = threading.Barrier(4)
    results: list[list[bytes | None]] = []

    def worker(t: int) -> None:
        barrier.wait()
        cache.set_many("ns", {f"t{t}": b"v"})
        results.append(cache.get_many("ns", [f"t{t}"]))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(map(tuple, results)) == [(b"v",)] * 4
    assert cache.degraded and 1 <= cache.stats.errors <= 4
    assert len(_warnings(caplog)) == 1


def test_codec_values_survive_the_redis_round_trip(cache: RedisCache):
    from search.cache.codec import (
        decode_json,
        decode_next_token,
        decode_rollout,
        encode_json,
        encode_next_token,
        encode_rollout,
    )
    from search.cache.store import NS_EXECUTION, NS_NEXT_TOKEN, NS_ROLLOUT, cache_key

    key = cache_key("model", (1, 2, 3))
    cache.set_many(NS_NEXT_TOKEN, {key: encode_next_token([5, 9], [-0.25, -1.5], 0.5)})
    cache.set_many(NS_ROLLOUT, {key: encode_rollout([5, 6], [-0.25, -0.5], "stop", None)})
    cache.set_many(NS_EXECUTION, {key: encode_json({"passed": 2, "total": 3})})
    [ntd] = cache.get_many(NS_NEXT_TOKEN, [key])
    [roll] = cache.get_many(NS_ROLLOUT, [key])
    [exe] = cache.get_many(NS_EXECUTION, [key])
    assert ntd is not None and roll is not None and exe is not None
    assert decode_next_token(ntd) == ([5, 9], [-0.25, -1.5], 0.5)
    assert decode_rollout(roll) == ([5, 6], [-0.25, -0.5], "stop", None)
    assert decode_json(exe) == {"passed": 2, "total": 3}
