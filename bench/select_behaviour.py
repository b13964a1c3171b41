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

SOURCE_CONFIG = "bon16@chat-prefill"
STYLE = "chat-prefill"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=ROOT / "bench/results/humaneval.jsonl")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/humaneval_select.jsonl")
    ap.add_argument("--dataset", default="humaneval", help="humaneval, humaneval:A-B, humaneval:3,10-19")
    ap.add_argument("--model", default="bundled-default")
    ap.add_argument("--dtype", default="int4", help="weights of the model that writes inputs")
    ap.add_argument("--ks", default="4,8,16")
    ap.add_argument("--written", type=int, default=8, help="calls the model is asked to write")
    ap.add_argument("--mutations", type=int, default=12, help="mutated inputs at most")
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
    from search.model.loader import load_model
    from search.problems.loaders import load_problems

    ks = [int(k) for k in args.ks.split(",")]
    source = {
        r["task_id"]: r for r in map(json.loads, args.source.open()) if r.get("config") == SOURCE_CONFIG
    }
    done = _done_tasks(args.out, len(ks) * 2)
    problems = [p for p in load_problems(args.dataset) if p.id in source and p.id not in done]
    print(f"{len(problems)} problems to do ({len(done)} done in {args.out})", file=sys.stderr)
    if not problems:
        return
    lm = load_model(args.model, dtype=args.dtype)
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
            rows = problem_rows(engine, lm, probe, problem, source[problem.id], ks, args)
            for row in rows:
                row["commit"], row["weights"] = commit, args.dtype
                out.write(json.dumps(row) + "\n")
            out.flush()
            verdicts = " ".join(f"{r['config'].split('@')[0]}={'P' if r['passed'] else '-'}" for r in rows)
            print(
                f"[{n}/{len(problems)}] {problem.id} {time.monotonic() - started:.1f}s {verdicts}",
                file=sys.stderr,
            )


def problem_rows(
    engine: Any, lm: Any, probe: Any, problem: Any, source: dict[str, Any], ks: list[int], args: Any
) -> list[dict[str, Any]]:
    from scorers.agreement import rank_behaviours
    from scorers.behaviour import extra_inputs
    from scorers.written_inputs import write_inputs
    from search.state.context import Candidate, best_candidate

    rendered = engine.render(problem, STYLE)
    samples = source["samples"][: max(ks)]
    completions = [s["completion"] for s in samples]
    rates = [float(s.get("reward") or 0.0) for s in samples]
    if hasattr(lm, "kv"):
        lm.kv.clear()
    written = write_inputs(lm, problem, args.written)
    before = probe.executions
    inputs, written_built = extra_inputs(probe, rendered, written.calls, args.mutations)
    build_executions = probe.executions - before
    behaviours = probe.behaviours(rendered, completions, inputs)
    rows = []
    for k in ks:
        first = samples[:k]
        pool = [Candidate(s["completion"], [0] * s["tokens"], s["logprob"], s.get("reward")) for s in first]
        best = best_candidate(pool)
        public_choice = pool.index(best) if best is not None else None
        groups = rank_behaviours(behaviours[:k], rates[:k])
        behaviour_choice = max(groups[0].members, key=lambda i: (rates[i], -i)) if groups else None
        sample_tokens = sum(s["tokens"] for s in first)
        distinct = len({rendered.program(c) for c in completions[:k]})
        common = {"task_id": problem.id, "k": k, "sample_tokens": sample_tokens}
        rows.append(
            {
                "config": f"bon{k}-public@{STYLE}",
                "selector": "public",
                **common,
                **_judged(engine, rendered, completions, public_choice),
                "generated_tokens": sample_tokens,
                "executions": k,
            }
        )
        rows.append(
            {
                "config": f"bon{k}-behaviour@{STYLE}",
                "selector": "behaviour",
                **common,
                **_judged(engine, rendered, completions, behaviour_choice),
                "generated_tokens": sample_tokens + written.tokens,
                "written_tokens": written.tokens,
                "executions": k + build_executions + distinct,
                "groups": [g.summary() for g in groups],
                "inputs": len(inputs),
                "written_calls": written.calls,
                "written_built": written_built,
            }
        )
    return rows


def _judged(engine: Any, rendered: Any, completions: list[str], choice: int | None) -> dict[str, Any]:
    completion = completions[choice] if choice is not None else ""
    hidden = engine.scorer().score(rendered, completion, hidden=True)
    return {
        "chosen": choice,
        "passed": hidden.total > 0 and hidden.passed == hidden.total,
        "hidden": {"passed": hidden.passed, "total": hidden.total},
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
        by_config.setdefault(r["config"], []).append(r)
    lines = [
        "| configuration | problems | passed | pass@1 | mean tokens | mean input-writing tokens "
        "| mean executions |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in sorted(by_config, key=lambda c: (int(c.split("-")[0][3:]), c)):
        rs = by_config[name]
        n, passed = len(rs), sum(r["passed"] for r in rs)
        lines.append(
            f"| {name} | {n} | {passed} | {100 * passed / n:.1f}% "
            f"| {sum(r['generated_tokens'] for r in rs) / n:.0f} "
            f"| {sum(r.get('written_tokens', 0) for r in rs) / n:.0f} "
            f"| {sum(r['executions'] for r in rs) / n:.1f} |"
        )
    table = path.with_name(path.stem + "_table.md")
    table.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
