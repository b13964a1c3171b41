"""The test reward of PG-TD and best-of-N: public-test pass rate of a program, through the sandbox.

Reward values (``TestReward``):

- ``pass_rate`` = passed / total in [0, 1] (0.0 for a program with no tests to run or a compile
  error, and for prose, which is never run: ``TestReward.not_run``); this is the reward PG-TD's
  MCTS backs up and best-of-N ranks by;
- ``kind`` says why: ``"compile_error"`` (the program does not parse; ``compile_error=True``),
  ``"runtime_error"`` (loading raised, or some test ended in error/timeout/memory/signal;
  ``runtime_error=True``), ``"failed"`` (ran, some answers wrong), ``"passed"`` (all passed);
- ``shaped`` is the CodeRL/PG-TD-style shaped variant for planners that want to separate the
  cases: -1.0 compile error, -0.6 runtime error with nothing passed, -0.3 nothing passed,
  otherwise ``pass_rate``.

Results are cached by (program hash, tests hash, limits, harness version) in a
``search.cache.store.Cache`` under ``NS_EXECUTION`` as ``ExecutionResult`` JSON. A cache hit never
executes; ``TestScorer.executions`` counts the real executions so a caller can charge its budget.

>>> scorer = TestScorer(open_executor())  # doctest: +SKIP
>>> scorer.score(problem, completion).pass_rate  # doctest: +SKIP
1.0
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sandbox.executor import ExecutionResult, Executor, Limits
from sandbox.pool import Job, SandboxPool
from sandbox.protocol import HARNESS_VERSION
from scorers.execution_cache import cached_results, store_results
from search.cache.store import Cache, cache_key
from search.problems.problem import Problem, tests_hash

RewardKind = Literal["compile_error", "runtime_error", "failed", "passed"]
RUNTIME_STATUSES = frozenset({"error", "timeout", "memory", "signal"})


@dataclass(frozen=True)
class TestReward:
    """The reward of one program on one problem's tests."""

    __test__ = False  # not a pytest class

    pass_rate: float
    passed: int
    total: int
    compile_error: bool
    runtime_error: bool
    result: ExecutionResult
    cached: bool

    @property
    def kind(self) -> RewardKind:
        if self.compile_error:
            return "compile_error"
        if self.runtime_error:
            return "runtime_error"
        return "passed" if self.total and self.passed == self.total else "failed"

    @property
    def shaped(self) -> float:
        if self.compile_error:
            return -1.0
        if self.passed == 0:
            return -0.6 if self.runtime_error else -0.3
        return self.pass_rate

    @classmethod
    def not_run(cls) -> TestReward:
        """The reward of an answer that is not a program (prose): nothing was started or run, and
        nothing passed."""
        result = ExecutionResult(verdicts=[], starts=0, message="the answer is prose: nothing to run")
        return cls(0.0, 0, 0, compile_error=False, runtime_error=False, result=result, cached=False)

    @classmethod
    def from_result(cls, result: ExecutionResult, cached: bool) -> TestReward:
        total, passed = result.total, result.passed
        runtime = result.program_status not in ("ok", "compile_error") or any(
            v.status in RUNTIME_STATUSES for v in result.verdicts
        )
        return cls(
            pass_rate=passed / total if total and not result.compile_error else 0.0,
            passed=passed,
            total=total,
            compile_error=result.compile_error,
            runtime_error=runtime and not result.compile_error,
            result=result,
            cached=cached,
        )


class TestScorer:
    """Pass rate of completions on a problem's public (or hidden) tests, cached and in parallel."""

    __test__ = False

    def __init__(
        self,
        executor: Executor,
        cache: Cache | None = None,
        limits: Limits | None = None,
        pool: SandboxPool | None = None,
    ) -> None:
        self.executor = executor
        self.cache = cache
        self.limits = limits or Limits()
        self.pool = pool or SandboxPool(executor)
        self.executions = 0
        self.cache_hits = 0
        self._lock = threading.Lock()

    def key(
        self,
        program: str,
        problem: Problem,
        hidden: bool,
        suite_hash: str | None = None,
        limits: Limits | None = None,
    ) -> str:
        """The execution cache key of ``program`` against the problem's judged suite (``suite_hash``
        and ``limits``: its ``tests_hash`` and ``limits_for``, when the caller has them already)."""
        if suite_hash is None:
            suite_hash = tests_hash(problem.judged_tests(hidden))
        if limits is None:
            limits = self.limits_for(problem, hidden)
        program_hash = hashlib.sha256(program.encode("utf-8", "surrogatepass")).hexdigest()
        return cache_key(
            "tests",
            HARNESS_VERSION,
            program_hash,
            suite_hash,
            problem.entry_point,
            limits.model_dump_json(),
        )

    def limits_for(self, problem: Problem, hidden: bool) -> Limits:
        """The scorer's limits, widened for a hidden suite the benchmark allows more time
        (``Problem.hidden_time``): never less than the scorer's own."""
        allowance = problem.hidden_time if hidden else None
        if allowance is None:
            return self.limits
        total = max(self.limits.wall_total, allowance.total)
        return self.limits.model_copy(
            update={
                "wall_per_test": max(self.limits.wall_per_test, allowance.per_test),
                "wall_total": total,
                "cpu_seconds": max(self.limits.cpu_seconds, math.ceil(total)),
            }
        )

    def score(self, problem: Problem, completion: str, hidden: bool = False) -> TestReward:
        return self.score_many(problem, [completion], hidden=hidden)[0]

    def score_many(
        self, problem: Problem, completions: Sequence[str], hidden: bool = False
    ) -> list[TestReward]:
        """Rewards in the order of ``completions``; cache hits (and duplicates) never execute."""
        if not problem.runs_program:
            return [TestReward.not_run() for _ in completions]
        programs = [problem.program(c) for c in completions]
        tests = problem.judged_tests(hidden)  # once per call: it parses the prompt and the tests
        suite_hash = tests_hash(tests)
        limits = self.limits_for(problem, hidden)
        keys = [self.key(p, problem, hidden, suite_hash, limits) for p in programs]
        rewards = {
            k: TestReward.from_result(r, cached=True) for k, r in cached_results(self.cache, keys).items()
        }
        todo = {k: p for k, p in zip(keys, programs, strict=True) if k not in rewards}
        jobs = [Job(p, tests, limits, problem.entry_point) for p in todo.values()]
        results = self.pool.run_many(jobs) if jobs else []
        with self._lock:
            self.executions += len(jobs)
            self.cache_hits += len(keys) - len(jobs)
        fresh = dict(zip(todo, results, strict=True))
        for k, r in fresh.items():
            rewards[k] = TestReward.from_result(r, cached=False)
        store_results(self.cache, fresh)
        return [rewards[k] for k in keys]
