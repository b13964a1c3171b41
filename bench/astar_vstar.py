"""A*-decoding vs best-of-N (tokens to equal accuracy) and V-STAR vs PG-TD (pass@1 and diversity at
equal tokens), on a HumanEval subset with the bundled model.

1. ``best_of_n`` draws all of its samples (``early_stop=False``: greedy first, then rounds of
   ``--bon-batch`` samples, ``--bon-n`` in all) and ``astar`` (default params) solves every problem
   once. From the best-of-N samples, in the order drawn, the bench reads the whole best-of-N curve:
   for each round boundary k, the best of the first k samples (public reward, then likelihood), its
   hidden-test verdict and the tokens of those k samples. It also reads the *early-stopping*
   variant (stop after the first round with a public pass; what ``best_of_n`` does by default),
   a stronger baseline than the paper's. Reported: the tokens best-of-N needs to reach its best
   accuracy, and to reach A*'s accuracy, each over A*'s tokens.
2. ``vstar`` and ``pgtd`` (``pgtd`` falls back to ``best_of_n`` if it is not installed) each get
   the same ``Budget(max_tokens=T)`` per problem and no early stop; reported: hidden pass@1 of the
   answer and diversity = distinct programs (whitespace-normalised) that pass the public tests.

Every run gets a fresh partial-state cache and a fresh execution cache, so no planner profits
from another's work (the model's KV cache is shared, which changes wall time only). Results are
written after every run (JSON, resumable: finished runs are skipped).

    python bench/astar_vstar.py --problems 0-39 --tokens 300 [--parts 1,2] \
        [--out bench/results/astar_vstar.json]
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
from search.cache.store import MemoryCache  # noqa: E402
from search.limits.budget import Budget, Meter  # noqa: E402
from search.model.loader import load_model  # noqa: E402
from search.problems.loaders import load_problem  # noqa: E402
from search.state.context import SearchContext  # noqa: E402


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
    samples = None
    if planner == "best_of_n":
        samples = []
        for c in result.candidates:  # in the order drawn
            h = scorer.score(problem, c.completion, hidden=True)
            samples.append(
                {
                    "tokens": len(c.token_ids),
                    "logprob": c.logprob,
                    "public_reward": c.reward,
                    "hidden_pass": bool(h.total and h.passed == h.total),
                }
            )
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
        **({"samples": samples} if samples is not None else {}),
    }


def round_ends(n: int, batch: int) -> list[int]:
    """Sample counts at which a best-of-N run (greedy first, then rounds of ``batch``) can stop.

    >>> round_ends(9, 4)
    [1, 5, 9]
    """
    ends, k = [1], 1
    while k < n:
        k = min(n, k + batch)
        ends.append(k)
    return ends


def pick(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """best_candidate's rule on the recorded samples: public reward, then mean log-prob per token."""
    return max(
        samples,
        key=lambda s: (
            s["public_reward"] if s["public_reward"] is not None else float("-inf"),
            s["logprob"] / max(1, s["tokens"]),
        ),
    )


def bon_curve(rows: list[dict[str, Any]], ends: list[int]) -> dict[str, Any]:
    """Best-of-k accuracy and tokens for every round boundary k, and the early-stopping variant."""
    curve = []
    for k in ends:
        firsts = [r["samples"][:k] for r in rows]
        curve.append(
            {
                "k": k,
                "solved": sum(pick(s)["hidden_pass"] for s in firsts),
                "tokens": sum(x["tokens"] for s in firsts for x in s),
            }
        )
    early_solved, early_tokens = 0, 0
    for r in rows:
        samples = r["samples"]
        stop = next((k for k in ends if any(x["public_reward"] == 1.0 for x in samples[:k])), ends[-1])
        early_solved += pick(samples[:stop])["hidden_pass"]
        early_tokens += sum(x["tokens"] for x in samples[:stop])
    return {"curve": curve, "early_stop": {"solved": early_solved, "tokens": early_tokens}}


def tokens_to_reach(curve: list[dict[str, Any]], solved: int) -> int | None:
    """The fewest tokens at which best-of-k solves at least ``solved`` problems (None: never)."""
    return next((c["tokens"] for c in curve if c["solved"] >= solved), None)


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
    ap.add_argument("--bon-n", type=int, default=17, help="best-of-N samples (greedy + rounds)")
    ap.add_argument("--bon-batch", type=int, default=4, help="best-of-N samples per round")
    ap.add_argument(
        "--astar-expansions", default="16", help="A* max_expansions settings, e.g. 4,8,16 (16 = default)"
    )
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
        bon = {"n": args.bon_n, "batch_size": args.bon_batch, "early_stop": False}
        plan += [("1", "best_of_n", bon, Budget())]
        plan += [
            ("1", astar_label(e), {"max_expansions": e}, Budget())
            for e in sorted(int(x) for x in args.astar_expansions.split(","))
        ]
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
        name = "astar" if planner.startswith("astar") else planner
        row = {"part": part, **run_one(lm, executor, idx, name, params, budget), "planner": planner}
        rows.append(row)
        keys = ("part", "planner", "problem", "hidden_pass", "tokens", "distinct_public_passing", "seconds")
        print(json.dumps({k: row[k] for k in keys} | {"stop_reason": row["stop_reason"]}), flush=True)
        write(args, problems, rows, rival)
    write(args, problems, rows, rival)


def astar_label(max_expansions: int) -> str:
    """Row label of an A* setting; the default (16 expansions) is plain ``astar``."""
    return "astar" if max_expansions == 16 else f"astar_e{max_expansions}"


def write(args: argparse.Namespace, problems: list[int], rows: list[dict[str, Any]], rival: str) -> None:
    labels = sorted({r["planner"] for r in rows if r["part"] == "1" and r["planner"].startswith("astar")})
    part1: dict[str, Any] = {p: summarise(rows, p, "1") for p in ("best_of_n", *labels)}
    bon_rows = [r for r in rows if r["part"] == "1" and r["planner"] == "best_of_n" and "samples" in r]
    by_label = {
        label: {r["problem"]: r for r in rows if r["part"] == "1" and r["planner"] == label}
        for label in labels
    }
    paired = [r for r in bon_rows if all(r["problem"] in got for got in by_label.values())]
    if paired and labels:
        curve = bon_curve(paired, round_ends(args.bon_n, args.bon_batch))
        astar_curve = sorted(
            (
                {
                    "setting": label,
                    "solved": sum(by_label[label][r["problem"]]["hidden_pass"] for r in paired),
                    "tokens": sum(by_label[label][r["problem"]]["tokens"] for r in paired),
                }
                for label in labels
            ),
            key=lambda c: c["tokens"],
        )
        best = max(c["solved"] for c in curve["curve"])
        at_best = tokens_to_reach(curve["curve"], best)
        # A*'s cheapest setting that reaches best-of-N's best accuracy (else its most accurate one)
        reaching = [c for c in astar_curve if c["solved"] >= best]
        chosen = reaching[0] if reaching else max(astar_curve, key=lambda c: (c["solved"], -c["tokens"]))
        a_solved, a_tokens = chosen["solved"], chosen["tokens"]
        at_astar = tokens_to_reach(curve["curve"], a_solved)
        early = curve["early_stop"]
        part1["comparison"] = {
            "problems": len(paired),
            "astar_settings": astar_curve,
            "astar": chosen,
            "best_of_k": curve["curve"],
            "best_of_n_early_stop": early,
            "bon_best_solved": best,
            "bon_tokens_to_its_best": at_best,
            "astar_reaches_bon_best": a_solved >= best,
            "ratio_bon_tokens_to_its_best_over_astar": round(at_best / a_tokens, 2)
            if at_best and a_solved >= best
            else None,
            "bon_tokens_to_astar_accuracy": at_astar,
            "ratio_bon_tokens_to_astar_accuracy_over_astar": round(at_astar / a_tokens, 2)
            if at_astar
            else None,
            "ratio_early_stop_bon_over_astar": round(early["tokens"] / a_tokens, 2)
            if early["solved"] <= a_solved
            else None,
        }
    summary = {
        "subset": f"humaneval:{args.problems}",
        "problems": problems,
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
        "part1_tokens_to_accuracy": part1,
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
