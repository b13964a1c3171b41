"""treedec's surfaces. Importing any of them sets the sandbox that computes a dataset's expected
values on its first load (MBPP+: ``search/problems/mbpp.py``), as the loaders sit below the sandbox."""

from __future__ import annotations

from collections.abc import Sequence

from search.problems.mbpp import CallOutcome, use_reference_runner


def _run_references(jobs: Sequence[tuple[str, Sequence[str]]]) -> Sequence[Sequence[CallOutcome]]:
    from sandbox import SandboxPool, open_executor
    from sandbox.reference import ReferenceRunner

    executor = open_executor("auto")
    with SandboxPool(executor) as pool:
        return ReferenceRunner(executor, pool=pool)(jobs)


use_reference_runner(_run_references)
