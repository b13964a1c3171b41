"""A*-decoding vs best-of-N (tokens to equal accuracy) and V-STAR vs PG-TD (pass@1 and diversity at
equal tokens), on a small HumanEval subset with the bundled model.

1. ``best_of_n`` (n samples, greedy first, stops when one passes the public tests) and ``astar``
   (default params) each solve every problem once; reported: hidden-test pass@1, total and mean
   generated tokens, and the token ratio best_of_n / astar when A* reaches best-of-N's accuracy.
2. ``vstar`` and ``pgtd`` (``pgtd`` falls back to ``best_of_n`` if it is not installed) each get
   the same ``Budget(max_tokens=T)`` per problem and no early stop; reported: hidden pass@1 of the
   answer and diversity = distinct programs (whitespace-normalised) that pass the public tests.

Every run gets a fresh partial-state cache and a fresh execution cache, so no planner profits
from another's work (the model's KV cache is shared, which changes wall time only). Results are
written after every run (JSON, resumable: finished runs are skipped).

    python bench/astar_vstar.py --problems 8-11 --tokens 300 [--out bench/results/astar_vstar.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import planners  # noqa: E402
from planners.vstar import normalise  # noqa: E402
from sandbox import open_executor  # noqa: E402
from scorers.tests import TestScorer  # noqa: E402
from search.budget import Budget, Meter  # noqa: E402
from search.cache import MemoryCache  # noqa: E402
from search.context import SearchContext  # noqa: E402
from search.loaders import load_problem  # noqa: E402
from search.models import load_model  # noqa: E402


def parse_range(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def run_one(
    lm: Any, executor: Any, idx: int, planner: str, params: dict[str, Any], budget: Budget
) -> dict[str, Any]:
    problem = load_problem(f"humaneval:{idx}")
    cache = MemoryCache()
    scorer = TestScorer(executor, cache=MemoryCache())
    ctx = SearchContext.create(lm, meter=Meter(budget=budget), cache=cache, scorer=scorer)
    t0 = time.monotonic()
    result = planners.create(planner, params).solve(problem, ctx)
    seconds = time.monotonic() - t0
    completion = result.best.completion if result.best else ""
    hidden = scorer.score(problem, completion, hidden=True)
    passing = {normalise(c.completion) for c in result.candidates if c.reward == 1.0}
    return {
        "problem": idx,
        "planner": planner,
        "params": params,
        "budget": budget.model_dump(exclude_none=True),
        "hidden_pass": bool(hidden.total and hidden.passed == hidden.total),
        "public_reward": result.best.reward if result.best else None,
        "tokens": result.spend.generated_tokens,
        "forward_passes": result.spend.forward_passes,
        "executions": result.spend.executions,
        "seconds": round(seconds, 1),
        "stop_reason": result.stop_reason,
        "candidates": len(result.candidates),
        "distinct_public_passing": len(passing),
        "extra": result.spend.extra,
    }


def summarise(rows: list[dict[str, Any]], planner: str, part: str) -> dict[str, Any]:
    mine = [r for r in rows if r["planner"] == planner and r["part"] == part]
    if not mine:
        return {}
    return {
        "problems": len(mine),
        "pass@1": round(sum(r["hidden_pass"] for r in mine) / len(mine), 3),
        "solved": sum(r["hidden_pass"] for r in mine),
        "tokens_total": sum(r["tokens"] for r in mine),
        "tokens_mean": round(sum(r["tokens"] for r in mine) / len(mine), 1),
        "executions_total": sum(r["executions"] for r in mine),
        "seconds_total": round(sum(r["seconds"] for r in mine), 1),
        "distinct_public_passing_total": sum(r["distinct_public_passing"] for r in mine),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default="8-11", help="HumanEval indices, e.g. 8-11 or 0,3,5-7")
    ap.add_argument("--bon-n", type=int, default=8, help="best-of-N samples")
    ap.add_argument("--tokens", type=int, default=300, help="per-problem token budget of part 2")
    ap.add_argument("--parts", default="1,2", help="which parts to run")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "astar_vstar.json")
    args = ap.parse_args()

    problems = parse_range(args.problems)
    rows: list[dict[str, Any]] = []
    if args.out.exists():
        rows = json.loads(args.out.read_text()).get("runs", [])
    done = {(r["part"], r["planner"], r["problem"]) for r in rows}
    lm = load_model("bundled-default")
    executor = open_executor("auto")
    rival = "pgtd" if "pgtd" in planners.names() else "best_of_n"
    plan: list[tuple[str, str, dict[str, Any], Budget]] = []
    if "1" in args.parts.split(","):
        plan += [("1", "best_of_n", {"n": args.bon_n}, Budget()), ("1", "astar", {}, Budget())]
    if "2" in args.parts.split(","):
        equal = Budget(max_tokens=args.tokens)
        rival_params: dict[str, Any] = (
            {"rollouts": 1000, "early_stop": False} if rival == "pgtd" else {"n": 256, "include_greedy": True}
        )
        plan += [("2", "vstar", {"rollouts": 1000}, equal), ("2", rival, rival_params, equal)]
    order = [(part, idx, run) for part in ("1", "2") for idx in problems for run in plan if run[0] == part]
    for _, idx, (part, planner, params, budget) in order:  # part 1 (paired per problem), then part 2
        if (part, planner, idx) in done:
            continue
        row = {"part": part, **run_one(lm, executor, idx, planner, params, budget)}
        rows.append(row)
        keys = ("part", "planner", "problem", "hidden_pass", "tokens", "distinct_public_passing", "seconds")
        print(json.dumps({k: row[k] for k in keys} | {"stop_reason": row["stop_reason"]}), flush=True)
        write(args, problems, rows, rival)
    write(args, problems, rows, rival)


def write(args: argparse.Namespace, problems: list[int], rows: list[dict[str, Any]], rival: str) -> None:
    part1 = {p: summarise(rows, p, "1") for p in ("best_of_n", "astar")}
    bon, ast = part1["best_of_n"], part1["astar"]
    ratio = None
    if bon and ast and ast["pass@1"] >= bon["pass@1"] and ast["tokens_total"]:
        ratio = round(bon["tokens_total"] / ast["tokens_total"], 2)
    summary = {
        "subset": f"humaneval:{args.problems}",
        "problems": problems,
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "part1_tokens_to_accuracy": {
            **part1,
            "bon_over_astar_token_ratio_at_equal_or_better_accuracy": ratio,
        },
        "part2_equal_tokens": {
            "tokens_per_problem": args.tokens,
            "rival": rival,
            "vstar": summarise(rows, "vstar", "2"),
            rival: summarise(rows, rival, "2"),
        },
        "runs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
