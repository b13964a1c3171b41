"""The partial-state cache in the engine's flow: shared through a real Redis, and surviving its loss."""

from __future__ import annotations

import logging

import pytest

import planners
from sandbox import open_executor
from scorers.tests import TestScorer
from search.cache.factory import open_cache
from search.cache.redis_store import RedisCache
from search.cache.store import MemoryCache
from search.model.lm import GenerationParams
from search.problems.problem import FunctionTest, Problem
from search.state.context import SearchContext

PROBLEM = Problem(
    id="t/double",
    prompt='def double(x):\n    """Return 2 * x."""\n',
    entry_point="double",
    public_tests=[FunctionTest(call="double(2)", expected="4"), FunctionTest(call="double(0)", expected="0")],
    hidden_tests=[FunctionTest(code="assert double(5) == 10")],
)


def test_open_cache_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TREEDEC_CACHE", "memory")
    assert isinstance(open_cache(None), MemoryCache)


def test_a_second_process_sharing_redis_needs_no_forward_passes(tiny_lm, redis_server) -> None:  # type: ignore[no-untyped-def]
    first_cache = RedisCache.connect(redis_server.url)
    tiny_lm.kv.clear()
    ctx1 = SearchContext.create(
        tiny_lm, cache=first_cache, scorer=TestScorer(open_executor(), cache=first_cache)
    )
    planners.create("greedy", {"max_new_tokens": 8}).solve(PROBLEM, ctx1)
    assert ctx1.meter.spend.forward_passes > 0
    # Another connection (as another process would have), with the in-process KV cache cleared.
    second_cache = RedisCache.connect(redis_server.url)
    tiny_lm.kv.clear()
    ctx2 = SearchContext.create(tiny_lm, cache=second_cache)
    r2 = planners.create("greedy", {"max_new_tokens": 8}).solve(PROBLEM, ctx2)
    assert ctx2.meter.spend.forward_passes == 0
    assert ctx2.meter.spend.cache_hits >= 1
    assert r2.best is not None


def test_execution_results_are_shared_through_redis(redis_server) -> None:  # type: ignore[no-untyped-def]
    a = TestScorer(open_executor(), cache=RedisCache.connect(redis_server.url))
    b = TestScorer(open_executor(), cache=RedisCache.connect(redis_server.url))
    ra = a.score(PROBLEM, "    return 2 * x\n")
    rb = b.score(PROBLEM, "    return 2 * x\n")
    assert ra.pass_rate == rb.pass_rate == 1.0
    assert not ra.cached and rb.cached
    assert b.executions == 0


def test_search_finishes_on_memory_when_redis_dies_midway(tiny_lm, redis_server, caplog) -> None:  # type: ignore[no-untyped-def]
    cache = RedisCache.connect(redis_server.url)
    tiny_lm.kv.clear()
    # repeats within a search would be read off its greedy path: this test is about the cache
    ctx = SearchContext.create(tiny_lm, cache=cache, reuse_paths=False)
    prompt = tiny_lm.encode(PROBLEM.prompt)
    before = ctx.lm.rollouts([prompt], GenerationParams(max_new_tokens=6))[0]
    redis_server.kill()
    with caplog.at_level(logging.WARNING, logger="treedec.cache"):
        after = ctx.lm.rollouts([prompt], GenerationParams(max_new_tokens=6))[0]
        again = ctx.lm.rollouts([prompt], GenerationParams(max_new_tokens=6))[0]
    assert cache.degraded
    assert after.token_ids == before.token_ids == again.token_ids
    assert len([r for r in caplog.records if r.name == "treedec.cache"]) == 1


def test_a_pgtd_search_survives_redis_being_killed_midway(tiny_lm, redis_server, caplog) -> None:  # type: ignore[no-untyped-def]
    problem = Problem(
        id="comment",
        prompt="def f():\n    return 1\n# ",
        entry_point="f",
        stop=["\n"],
        public_tests=[FunctionTest(call="f()", expected="3")],  # never passes: the search runs to its cap
        hidden_tests=[FunctionTest(call="f()", expected="1")],
    )
    params = {"rollouts": 6, "max_new_tokens": 8, "parallel_rollouts": 1}

    def search(cache, events=None):  # type: ignore[no-untyped-def]
        tiny_lm.kv.clear()
        ctx = SearchContext.create(
            tiny_lm, cache=cache, scorer=TestScorer(open_executor(), cache=cache), events=events
        )
        return planners.create("pgtd", params).solve(problem, ctx)

    reference = search(MemoryCache())
    cache = RedisCache.connect(redis_server.url)
    seen: list[str] = []

    def kill_after_first_rollout(event: dict) -> None:  # type: ignore[type-arg]
        seen.append(event["event"])
        if event["event"] == "rollout" and redis_server.alive:
            redis_server.kill()

    with caplog.at_level(logging.WARNING, logger="treedec.cache"):
        result = search(cache, kill_after_first_rollout)
    assert "rollout" in seen and not redis_server.alive
    assert cache.degraded
    assert result.stop_reason == reference.stop_reason
    assert [c.completion for c in result.candidates] == [c.completion for c in reference.candidates]
    assert len([r for r in caplog.records if r.name == "treedec.cache"]) == 1
