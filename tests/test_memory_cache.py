"""The in-memory LRU cache: bounded in bytes, LRU order, TTL, stats."""

from __future__ import annotations

import time

import pytest

from search.cache.factory import open_cache
from search.cache.store import Cache, MemoryCache


def _cost(namespace: str, key: str, value: bytes) -> int:
    return MemoryCache._cost((namespace, key), value)


def test_memory_cache_satisfies_the_cache_protocol():
    assert isinstance(MemoryCache(), Cache)
    assert isinstance(open_cache("memory"), MemoryCache)


def test_namespaces_keep_equal_keys_apart():
    c = MemoryCache(max_bytes=10_000)
    c.set_many("ntd", {"k": b"dist"})
    c.set_many("exec", {"k": b"result"})
    assert c.get_many("ntd", ["k"]) == [b"dist"]
    assert c.get_many("exec", ["k"]) == [b"result"]


def test_bound_is_in_bytes_not_entries():
    one = _cost("ns", "k00", b"x" * 100)
    c = MemoryCache(max_bytes=3 * one)
    c.set_many("ns", {f"k{i:02d}": b"x" * 100 for i in range(3)})
    assert len(c) == 3 and c.size_bytes == 3 * one
    big = b"y" * (2 * one - _cost("ns", "big", b""))  # costs as much as two small entries
    c.set_many("ns", {"big": big})
    assert c.size_bytes == 3 * one and len(c) == 2  # one entry in, two out: the bound is bytes
    assert c.get_many("ns", ["k00", "k01", "k02", "big"]) == [None, None, b"x" * 100, big]


def test_many_small_entries_fit_where_one_large_does_not():
    c = MemoryCache(max_bytes=1000)
    c.set_many("ns", {"huge": b"z" * 2000})
    assert c.get_many("ns", ["huge"]) == [None] and c.size_bytes == 0
    c.set_many("ns", {f"{i}": b"s" for i in range(10)})
    assert len(c) == 10


def test_eviction_drops_least_recently_used_first():
    one = _cost("ns", "a", b"v" * 10)
    c = MemoryCache(max_bytes=3 * one)
    c.set_many("ns", {"a": b"v" * 10, "b": b"v" * 10, "c": b"v" * 10})
    c.get_many("ns", ["a"])  # a is now the most recent; b is the oldest
    c.set_many("ns", {"d": b"v" * 10})
    assert c.get_many("ns", ["a", "b", "c", "d"]) == [b"v" * 10, None, b"v" * 10, b"v" * 10]


def test_overwrite_replaces_value_and_accounts_bytes_once():
    c = MemoryCache(max_bytes=10_000)
    c.set_many("ns", {"a": b"1" * 50})
    c.set_many("ns", {"a": b"2" * 10})
    assert c.get_many("ns", ["a"]) == [b"2" * 10]
    assert c.size_bytes == _cost("ns", "a", b"2" * 10) and len(c) == 1


def test_ttl_expires_entries_and_frees_their_bytes():
    c = MemoryCache(max_bytes=10_000)
    c.set_many("ns", {"short": b"s"}, ttl=0.05)
    c.set_many("ns", {"long": b"l"}, ttl=60)
    c.set_many("ns", {"forever": b"f"})
    assert c.get_many("ns", ["short", "long", "forever"]) == [b"s", b"l", b"f"]
    time.sleep(0.08)
    assert c.get_many("ns", ["short", "long", "forever"]) == [None, b"l", b"f"]
    assert c.size_bytes == _cost("ns", "long", b"l") + _cost("ns", "forever", b"f")


def test_stats_count_hits_misses_and_sets():
    c = MemoryCache(max_bytes=10_000)
    c.set_many("ns", {"a": b"1", "b": b"2"})
    c.get_many("ns", ["a", "b", "c"])
    c.get_many("ns", ["a"])
    assert (c.stats.hits, c.stats.misses, c.stats.sets, c.stats.errors) == (3, 1, 2, 0)
    assert c.stats.hit_rate == pytest.approx(0.75)


def test_clear_empties_and_resets_size():
    c = MemoryCache(max_bytes=10_000)
    c.set_many("ns", {"a": b"1"})
    c.clear()
    assert len(c) == 0 and c.size_bytes == 0 and c.get_many("ns", ["a"]) == [None]
