"""Concurrent executions bounded by the cores, for synchronous and asyncio callers.

>>> pool = SandboxPool(ProcessExecutor())  # doctest: +SKIP
>>> results = pool.run_many([Job(program, tests, entry_point="f")])  # doctest: +SKIP
>>> result = await pool.arun(Job(program, tests))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sandbox.executor import ExecutionResult, Executor, Limits, TestLike


@dataclass(frozen=True)
class Job:
    """One program and the tests to run it against."""

    program: str
    tests: Sequence[TestLike] = field(default_factory=tuple)
    limits: Limits | None = None
    entry_point: str | None = None


class SandboxPool:
    """At most ``max_workers`` (default: the number of cores) executions at once."""

    def __init__(self, executor: Executor, max_workers: int | None = None) -> None:
        self.executor = executor
        self.max_workers = max_workers or os.cpu_count() or 1
        self._threads = ThreadPoolExecutor(self.max_workers, thread_name_prefix="sandbox")

    def run(self, job: Job) -> ExecutionResult:
        return self.executor.run(job.program, job.tests, job.limits, entry_point=job.entry_point)

    def run_many(self, jobs: Sequence[Job]) -> list[ExecutionResult]:
        """Results in the order of ``jobs``."""
        if len(jobs) == 1:
            return [self.run(jobs[0])]
        return list(self._threads.map(self.run, jobs))

    async def arun(self, job: Job) -> ExecutionResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self.run, job)

    async def arun_many(self, jobs: Sequence[Job]) -> list[ExecutionResult]:
        return list(await asyncio.gather(*(self.arun(j) for j in jobs)))

    def close(self) -> None:
        self._threads.shutdown(wait=True)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
