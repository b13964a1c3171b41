"""Selection by behaviour against public-test filtering, on the committed best-of-16 samples.

The ``bon16@chat-prefill`` rows of ``bench/results/humaneval.jsonl`` keep every sample in the order
drawn (``bench/quality.py``). For each problem and each k in ``--ks`` (4, 8, 16) this re-selects
among the first k samples:

- ``public``: best-of-N's own rule (the best public-test pass rate, ties by likelihood);
- ``behaviour``: ``scorers/behaviour.py``: the public examples, mutations of them and calls the
  model writes (one short greedy generation a problem, shared by every k, its tokens counted) are
  built in the sandbox, every distinct program runs once over them, and the chosen program comes
  from the best behaviour group.

The chosen program is judged on the hidden tests as bench rows are (``TestScorer`` on the rendered
problem). One row per (selector, k, problem) goes to ``--out``, resumable: a rerun skips problems
whose rows are all there. Each row keeps the program, the groups, the inputs, the tokens (the
samples' plus the written inputs') and the executions (one per sample for the public tests, plus
the behaviour probe's). A markdown table is written beside the rows.

    OMP_NUM_THREADS=1 python bench/select_behaviour.py --dtype int4
    python bench/select_behaviour.py --report
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.quality_runs import code_commit  # noqa: E402
from scorers.group_scores import GROUP_SCORES  # noqa: E402

STYLE = "chat-prefill"  # the default; --style names another (the source rows are bon16@STYLE)
# every variant tried, all reported
RULES = tuple(GROUP_SCORES)  # the rules of scorers/group_scores.py, in its order
ROUNDS = (1, 5, 9, 13, 16)  # best-of-16's rounds: the greedy sample, then batches of 4
STOP_GRID = [(m, s, after) for m in (2, 3, 4, 5, 6) for s in (0.5, 0.6, 0.75, 0.9) for after in (5, 9)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=ROOT / "bench/results/humaneval.jsonl")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/humaneval_select_rules.jsonl")
    ap.add_argument("--dataset", default="humaneval", help="humaneval, humaneval:A-B, humaneval:3,10-19")
    ap.add_argument("--model", default="bundled-default")
    ap.add_argument("--dtype", default="int4", help="weights of the model that writes inputs")
    ap.add_argument("--ks", default="4,8,16")
    ap.add_argument("--written", type=int, default=8, help="calls the model is asked to write")
    ap.add_argument("--mutations", type=int, default=12, help="mutated inputs at most")
    ap.add_argument(
        "--written-cache",
        type=Path,
        default=ROOT / "bench/results/humaneval_written_inputs_v2.jsonl",
        help="the model-written calls per problem: reused when there, else written and added",
    )
    ap.add_argument("--style", default=STYLE, help="the prompt style of the bon16 rows to re-select")
    ap.add_argument("--report", action="store_true", help="only write the table")
    args = ap.parse_args()
    if not args.report:
        run(args)
    write_table(args.out)


def run(args: argparse.Namespace) -> None:
    from api.core.engine import Engine
    from sandbox import open_executor
    from scorers.behaviour import BehaviourProbe
    from scorers.tests import TestScorer
    from search.cache.store import MemoryCache

    ks = [int(k) for k in args.ks.split(",")]
    wanted = f"bon16@{args.style}"
    source = {r["task_id"]: r for r in map(json.loads, args.source.open()) if r.get("config") == wanted}
    done = _done_tasks(args.out, len(ks) * (1 + len(RULES)) + 1)
    from search.problems.loaders import load_problems

    problems = [p for p in load_problems(args.dataset) if p.id in source and p.id not in done]
    print(f"{len(problems)} problems to do ({len(done)} done in {args.out})", file=sys.stderr)
    if not problems:
        return
    from search.model.loader import load_model

    lm = load_model(args.model, dtype=args.dtype)  # renders the chat prompt; writes missing inputs
    written = WrittenCache(args.written_cache, lm, args.written)
    executor = open_executor("auto")
    cache = MemoryCache()
    scorer = TestScorer(executor, cache=cache)
    engine = Engine(lm=lm, cache=cache, _scorer=scorer)
    probe = BehaviourProbe(scorer.pool)
    commit = code_commit()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as out:
        for n, problem in enumerate(problems, 1):
            started = time.monotonic()
            rows = problem_rows(engine, written, probe, problem, source[problem.id], ks, args)
            for row in rows:
                row["commit"], row["weights"] = commit, args.dtype
                out.write(json.dumps(row) + "\n")
            out.flush()
            verdicts = " ".join(
                f"{r['config'].split('@')[0]}={'P' if r['passed'] else '-'}"
                for r in rows
                if r["k"] == max(ks)
            )
            print(
                f"[{n}/{len(problems)}] {problem.id} {time.monotonic() - started:.1f}s {verdicts}",
                file=sys.stderr,
            )


class WrittenCache:
    """The model-written calls of each problem: read from ``path`` when it holds the problem, else
    written by the model and appended there, so a rerun writes none again."""

    def __init__(self, path: Path, lm: Any, n: int) -> None:
        self.path, self.lm, self.n = path, lm, n
        self.rows = {r["task_id"]: r for r in map(json.loads, path.open())} if path.exists() else {}

    def get(self, problem: Any) -> tuple[list[str], int, str]:
        if problem.id not in self.rows:
            from scorers.written_inputs import write_inputs

            if hasattr(self.lm, "kv"):
                self.lm.kv.clear()
            w = write_inputs(self.lm, problem, self.n)
            row = {
                "task_id": problem.id,
                "calls": w.calls,
                "tokens": w.tokens,
                "text": w.text,
                "weights": self.lm.identity.dtype,
                "commit": code_commit(),
            }
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            self.rows[problem.id] = row
        row = self.rows[problem.id]
        return list(row["calls"]), int(row["tokens"]), str(row.get("text", ""))


def problem_rows(
    engine: Any,
    written: WrittenCache,
    probe: Any,
    problem: Any,
    source: dict[str, Any],
    ks: list[int],
    args: Any,
) -> list[dict[str, Any]]:
    from scorers.behaviour import choose_by_behaviour, extra_inputs
    from scorers.inputs import entry_expectations
    from search.state.context import Candidate, best_candidate

    style = args.style
    rendered = engine.render(problem, style)
    samples = source["samples"][: max(ks)]
    completions = [s["completion"] for s in samples]
    rates = [float(s.get("reward") or 0.0) for s in samples]
    likelihoods = [s["logprob"] / max(1, s["tokens"]) for s in samples]
    calls, written_tokens, text = written.get(problem)
    stated = entry_expectations(text, rendered.entry_point or "", limit=args.written) if text else []
    before = probe.executions
    extra = extra_inputs(probe, rendered, calls, args.mutations, stated=stated)
    inputs, written_built, expectations = extra.inputs, extra.written_built, extra.expectations
    build_executions = probe.executions - before
    behaviours = probe.behaviours(rendered, completions, inputs)
    hidden = _hidden_verdicts(engine, rendered, completions)
    rows = []
    for k in ks:
        first = samples[:k]
        pool = [Candidate(s["completion"], [0] * s["tokens"], s["logprob"], s.get("reward")) for s in first]
        best = best_candidate(pool)
        public_choice = pool.index(best) if best is not None else None
        sample_tokens = sum(s["tokens"] for s in first)
        distinct = len({rendered.program(c) for c in completions[:k]})
        common = {"task_id": problem.id, "k": k, "sample_tokens": sample_tokens}
        rows.append(
            {
                "config": f"bon{k}-public@{style}",
                "selector": "public",
                **common,
                **_judged(engine, rendered, completions, public_choice),
                "generated_tokens": sample_tokens,
                "executions": k,
            }
        )
        for rule in RULES:
            choice, groups = choose_by_behaviour(
                behaviours[:k], rates[:k], likelihoods[:k], GROUP_SCORES[rule], expectations
            )
            rows.append(
                {
                    "config": f"bon{k}-behaviour-{rule}@{style}",
                    "selector": "behaviour",
                    "rule": rule,
                    **common,
                    **_judged(engine, rendered, completions, choice),
                    "generated_tokens": sample_tokens + written_tokens,
                    "written_tokens": written_tokens,
                    "executions": k + build_executions + distinct,
                    "groups": [g.summary() for g in groups],
                    "inputs": len(inputs),
                    "written_calls": calls,
                    "written_built": written_built,
                    "stated_values": len(expectations),
                }
            )
    rows.append(
        _stop_grid(
            problem.id,
            behaviours,
            rates,
            likelihoods,
            samples,
            hidden,
            rendered,
            build_executions,
            written_tokens,
            style,
            expectations,
        )
    )
    return rows


def _hidden_verdicts(engine: Any, rendered: Any, completions: list[str]) -> list[bool]:
    """Every sample's hidden verdict (the stop rule's grid chooses among any of them)."""
    rewards = engine.scorer().score_many(rendered, completions, hidden=True)
    return [r.total > 0 and r.passed == r.total for r in rewards]


def _stop_grid(
    task_id: str,
    behaviours: list[Any],
    rates: list[float],
    likelihoods: list[float],
    samples: list[dict[str, Any]],
    hidden: list[bool],
    rendered: Any,
    build_executions: int,
    written_tokens: int,
    style: str = STYLE,
    expectations: list[Any] | None = None,
) -> dict[str, Any]:
    """One row with, for every rule and every stop setting in ``STOP_GRID``, how many samples the
    dominance stop would have drawn (checked after each round of best-of-16's draw: 1, 5, 9, 13, 16)
    and whether its choice passes the hidden tests."""
    from scorers.behaviour import Dominance, choose_by_behaviour

    grid: dict[str, dict[str, Any]] = {}
    for rule in RULES:
        score = GROUP_SCORES[rule]
        for min_size, share, after in STOP_GRID:
            stop = Dominance(min_size, share, after)
            for n in ROUNDS:
                choice, groups = choose_by_behaviour(
                    behaviours[:n], rates[:n], likelihoods[:n], score, expectations or ()
                )
                if stop(groups) or n == ROUNDS[-1]:
                    break
            distinct = len({rendered.program(s["completion"]) for s in samples[:n]})
            grid[f"{rule}|{min_size}|{share}|{after}"] = {
                "n": n,
                "passed": choice is not None and hidden[choice],
                "tokens": sum(s["tokens"] for s in samples[:n]) + written_tokens,
                "executions": n + build_executions + distinct,
            }
    return {
        "config": f"stop-grid@{style}",
        "selector": "behaviour",
        "task_id": task_id,
        "k": ROUNDS[-1],
        "passed": any(hidden),
        "samples_passed": hidden,
        "grid": grid,
    }


def _judged(engine: Any, rendered: Any, completions: list[str], choice: int | None) -> dict[str, Any]:
    from api.core.evaluation import suite_verdicts

    completion = completions[choice] if choice is not None else ""
    hidden = engine.scorer().score(rendered, completion, hidden=True)
    passes = [i for i, v in enumerate(hidden.result.verdicts) if v.status == "passed"]
    return {
        "chosen": choice,
        "passed": hidden.total > 0 and hidden.passed == hidden.total,
        "hidden": {"passed": hidden.passed, "total": hidden.total},
        **suite_verdicts(rendered, passes),  # MBPP+: base_passed and plus_passed apart
        "program": rendered.program(completion),
        "completion": rendered.prompt_completion(completion),
    }


def _done_tasks(path: Path, rows_per_task: int) -> set[str]:
    if not path.exists():
        return set()
    counts: dict[str, int] = {}
    for line in path.open():
        if line.strip():
            task = json.loads(line)["task_id"]
            counts[task] = counts.get(task, 0) + 1
    return {t for t, n in counts.items() if n >= rows_per_task}


def write_table(path: Path) -> None:
    """``<out>_table.md``: pass count, mean tokens and executions of each (selector, k)."""
    rows = [json.loads(line) for line in path.open() if line.strip()] if path.exists() else []
    by_config: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if "grid" not in r:
            by_config.setdefault(r["config"], []).append(r)
    plus = bool(rows) and all("base_passed" in r for rs in by_config.values() for r in rs)
    base_head = "base tests passed | base - plus (points) | " if plus else ""
    lines = [
        f"| configuration | problems | {base_head}passed | pass@1 | mean tokens | mean input-writing tokens "
        "| mean executions |",
        "| --- | --- | --- | --- | --- | --- | --- |" + (" --- | --- |" if plus else ""),
    ]
    for name in sorted(by_config, key=lambda c: (int(c.split("-")[0][3:]), c)):
        rs = by_config[name]
        n, passed = len(rs), sum(r["passed"] for r in rs)
        base = ""
        if plus:  # MBPP+: passed is the base and plus tests; the base tests apart, and the gap
            base_n = sum(bool(r["base_passed"]) for r in rs)
            base = f"{base_n} | {100 * (base_n - passed) / n:.1f} | "
        lines.append(
            f"| {name} | {n} | {base}{passed} | {100 * passed / n:.1f}% "
            f"| {sum(r['generated_tokens'] for r in rs) / n:.0f} "
            f"| {sum(r.get('written_tokens', 0) for r in rs) / n:.0f} "
            f"| {sum(r['executions'] for r in rs) / n:.1f} |"
        )
    table = path.with_name(path.stem + "_table.md")
    table.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    write_stop_table(rows, path.with_name(path.stem + "_stop.md"))


def write_stop_table(rows: list[dict[str, Any]], path: Path) -> None:
    """``<out>_stop.md``: every stop setting of every rule, on best-of-16's samples: passes, mean
    samples drawn, tokens (the written inputs' included) and executions; best first."""
    grids = [r["grid"] for r in rows if "grid" in r]
    if not grids:
        return
    lines = [
        f"{len(grids)} problems; a setting is rule / min_size / min_share / after. Checked after each round "
        f"of best-of-16's draw ({', '.join(map(str, ROUNDS))}); without a stop every rule draws 16.",
        "",
        "| rule, stop setting | passed | mean samples | mean tokens | mean executions |",
        "| --- | --- | --- | --- | --- |",
    ]
    totals: dict[str, list[float]] = {}
    for grid in grids:
        for name, cell in grid.items():
            t = totals.setdefault(name, [0, 0, 0, 0])
            for i, field in enumerate(("passed", "n", "tokens", "executions")):
                t[i] += cell[field]
    n = len(grids)
    for name, (passed, drawn, tokens, execs) in sorted(
        totals.items(), key=lambda kv: (RULES.index(kv[0].split("|")[0]), -kv[1][0], kv[1][1])
    ):
        label = name.replace("|", " / ")
        lines.append(f"| {label} | {passed:.0f} | {drawn / n:.2f} | {tokens / n:.0f} | {execs / n:.1f} |")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
