"""HumanEval pass@1 (hidden tests) of greedy, beam, best-of-N and PG-TD at equal token budgets.

For every problem, every planner runs once through ``Engine.solve`` with the same model. Each run
gets a fresh partial-state cache and an empty KV cache, so no planner is served work another
planner paid for. ``best_of_n`` and ``pgtd`` share one generated-token budget (``--max-tokens``)
and both stop as soon as a program passes all public tests; greedy and beam run unbudgeted (one
completion each) and their spend is reported. One JSON line per (planner, problem) goes to
``--out``; a rerun skips the rows already there (resumable). The summary (pass@1, spend totals
and means, stop reasons, where PG-TD's time went) is written to ``--summary``.

    python bench/quality.py --dataset humaneval:0-19 --max-tokens 1024 \\
        --out bench/results/quality.jsonl --summary bench/results/quality.json
    python bench/quality.py --summarize-only --out bench/results/quality.jsonl
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from search.budget import Budget  # noqa: E402

PLANNERS = ["greedy", "beam", "best_of_n", "pgtd"]
BUDGETED = {"best_of_n", "pgtd"}


def planner_params(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Each planner's settings; the budgeted ones get enough headroom that the budget binds."""
    common = {"max_new_tokens": args.max_new_tokens}
    if name == "beam":
        return {**common, "num_beams": args.num_beams}
    if name == "best_of_n":
        return {**common, "n": args.n, "batch_size": args.batch_size, "seed": args.seed}
    if name == "pgtd":
        return {**common, "rollouts": args.rollouts, "width": args.width, "parallel_rollouts": args.parallel}
    return common


def load_rows(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[(row["planner"], row["task_id"])] = row
    return rows


def run_one(lm: Any, executor: Any, problem: Any, planner: str, args: argparse.Namespace) -> dict[str, Any]:
    from scorers.tests import TestScorer
    from search.cache import MemoryCache
    from search.runner import Engine

    cache = MemoryCache()
    if hasattr(lm, "kv"):
        lm.kv.clear()  # no planner reuses KV another planner computed
    engine = Engine(lm=lm, cache=cache, _scorer=TestScorer(executor, cache=cache))
    budget = Budget(max_tokens=args.max_tokens) if planner in BUDGETED else Budget()
    events: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    report = engine.solve(
        problem, planner, planner_params(planner, args), budget, events=events.append, include_tree=False
    )
    wall = time.perf_counter() - t0
    best = report.get("best") or {}
    return {
        "planner": planner,
        "task_id": problem.id,
        "passed": bool(report["hidden"] and report["hidden"]["all_passed"]),
        "public_passed": bool(report["public"] and report["public"]["all_passed"]),
        "has_public_tests": bool(problem.public_tests),
        "best_reward": best.get("reward"),
        "candidates": len(report["candidates"]),
        "stop_reason": report["stop_reason"],
        "spend": report["spend"],
        "wall_seconds": round(wall, 2),
        "events": len(events),
        "completion": report["completion"],
        "params": planner_params(planner, args),
        "budget": budget.model_dump(exclude_none=True),
    }


def summarize(rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    by_planner: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_planner.setdefault(row["planner"], []).append(row)
    # Compare planners only on problems every planner has finished.
    tasks = (
        set.intersection(*(set(r["task_id"] for r in rs) for rs in by_planner.values()))
        if by_planner
        else set()
    )
    budgets = sorted({r["budget"].get("max_tokens") for r in rows if r["planner"] in BUDGETED} - {None})
    out: dict[str, Any] = {
        "problems_compared": len(tasks),
        "max_tokens_budget": budgets,
        "machine": platform.processor() or platform.machine(),
        "planners": {},
    }
    greedy_fail = {
        r["task_id"] for r in by_planner.get("greedy", []) if not r["passed"] and r["task_id"] in tasks
    }
    for name, rs in by_planner.items():
        rs = [r for r in rs if r["task_id"] in tasks]
        if not rs:
            continue
        n = len(rs)
        spend_keys = (
            "generated_tokens",
            "processed_tokens",
            "forward_passes",
            "executions",
            "rollouts",
            "seconds",
        )
        totals = {k: round(sum(r["spend"][k] for r in rs), 2) for k in spend_keys}
        extra: dict[str, float] = {}
        for r in rs:
            for k, v in r["spend"].get("extra", {}).items():
                extra[k] = extra.get(k, 0) + v
        stops: dict[str, int] = {}
        for r in rs:
            stops[r["stop_reason"]] = stops.get(r["stop_reason"], 0) + 1
        passed = sum(r["passed"] for r in rs)
        out["planners"][name] = {
            "problems": n,
            "pass@1": round(passed / n, 4),
            "passed": passed,
            "public_passed": sum(r["public_passed"] for r in rs),
            "solved_where_greedy_failed": sorted(
                r["task_id"] for r in rs if r["passed"] and r["task_id"] in greedy_fail
            ),
            "spend_total": totals,
            "spend_mean": {k: round(v / n, 2) for k, v in totals.items()},
            "extra_total": {k: round(v, 2) for k, v in sorted(extra.items())},
            "stop_reasons": stops,
        }
    if "greedy" in out["planners"]:
        g = out["planners"]["greedy"]["pass@1"]
        out["delta_vs_greedy_points"] = {
            k: round(100 * (v["pass@1"] - g), 1) for k, v in out["planners"].items()
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="humaneval:0-19", help="humaneval:A-B, humaneval or a JSONL file")
    ap.add_argument("--tasks", default=None, help="comma-separated HumanEval indices (overrides --dataset)")
    ap.add_argument("--planners", default=",".join(PLANNERS))
    ap.add_argument("--model", default="bundled-default")
    ap.add_argument(
        "--max-tokens", type=int, default=1024, help="generated-token budget of best_of_n and pgtd"
    )
    ap.add_argument("--max-new-tokens", type=int, default=384, help="tokens per completion (all planners)")
    ap.add_argument("--num-beams", type=int, default=4)
    ap.add_argument("--n", type=int, default=64, help="best_of_n: sample cap (the token budget binds first)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rollouts", type=int, default=16, help="pgtd: MCTS iterations")
    ap.add_argument("--width", type=int, default=3, help="pgtd: top-k expansion width")
    ap.add_argument("--parallel", type=int, default=1, help="pgtd: parallel_rollouts")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/quality.jsonl")
    ap.add_argument("--summary", type=Path, default=ROOT / "bench/results/quality.json")
    ap.add_argument("--summarize-only", action="store_true")
    args = ap.parse_args()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = load_rows(args.out)
    if not args.summarize_only:
        from search.loaders import humaneval, load_problems
        from search.models import load_model

        problems = (
            humaneval([int(i) for i in args.tasks.split(",")]) if args.tasks else load_problems(args.dataset)
        )
        names = [p.strip() for p in args.planners.split(",") if p.strip()]
        lm = load_model(args.model)
        # bench/sandbox.py shadows the package for type checkers; ROOT comes first on sys.path at run time
        executor = importlib.import_module("sandbox").open_executor("auto")
        with open(args.out, "a") as sink:
            for problem in problems:
                for name in names:
                    if (name, problem.id) in done:
                        continue
                    row = run_one(lm, executor, problem, name, args)
                    done[(name, problem.id)] = row
                    sink.write(json.dumps(row) + "\n")
                    sink.flush()
                    print(
                        f"{problem.id} {name}: {'pass' if row['passed'] else 'fail'} "
                        f"tokens={row['spend']['generated_tokens']} {row['wall_seconds']}s",
                        file=sys.stderr,
                    )
                args.summary.write_text(json.dumps(summarize(list(done.values()), args), indent=1))
    summary = summarize(list(done.values()), args)
    args.summary.write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
