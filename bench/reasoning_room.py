"""Room to reason: how many new tokens each reasoning style needs, measured on GSM8K train.

Greedy decoding in each reasoning style (chain of thought, program-aided) on the fixed 40 train
problems of ``bench/gsm8k_samples.py`` (never test), with a generous cap (``CAP``). Greedy decoding
is the same text whatever the cap until the cap cuts it, so one run at the cap gives every smaller
limit: at a limit L a text longer than L tokens is cut off before its answer (no answer, wrong),
and every other text keeps its verdict. The report gives, per style and limit, the accuracy, the
mean generated tokens and the cut-offs, and the limit chosen: the smallest whose accuracy is the
accuracy at the cap and which cuts off at most ``MAX_CUT_OFF_SHARE`` of the problems, then the next
limit up (sampled texts, which the search planners draw, spread wider than greedy ones).

    OMP_NUM_THREADS=1 python bench/reasoning_room.py --dtype int8 \\
        --out bench/results/gsm8k_train_room.jsonl
    python bench/reasoning_room.py --report --out bench/results/gsm8k_train_room.jsonl
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

from bench.gsm8k_samples import TRAIN_40  # noqa: E402
from bench.quality_runs import code_commit  # noqa: E402

STYLES = ("chain-of-thought", "program-aided")
CAP = 1024
LIMITS = (192, 256, 320, 384, 448, 512, 640, 768, 1024)
MAX_CUT_OFF_SHARE = 0.05


def run_one(engine: Any, problem: Any, style: str, commit: str) -> dict[str, Any]:
    from search.problems.prompting import render

    start = time.perf_counter()
    rendered = render(problem, style, engine.model())
    report = engine.solve(rendered, "greedy", {"max_new_tokens": CAP}, include_tree=False)
    verdict = report.final_answer
    assert verdict is not None
    return {
        "style": style,
        "task_id": problem.id,
        "reference": problem.final_answer.reference,
        "completion": report.completion,
        "answer": verdict.answer.text,
        "rule": verdict.answer.rule,
        "reason": verdict.answer.reason,
        "correct": bool(verdict.correct),
        "generated_tokens": report.spend.generated_tokens,
        "cut_off": report.spend.generated_tokens >= CAP,
        "wall_seconds": round(time.perf_counter() - start, 2),
        "weights": engine.model().identity.dtype,
        "commit": commit,
    }


def at_limit(rows: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """Accuracy, mean tokens and cut-offs of greedy rows as if decoded with ``max_new_tokens=limit``.

    >>> rows = [{"correct": True, "generated_tokens": 100}, {"correct": True, "generated_tokens": 300}]
    >>> at_limit(rows, 200)
    {'limit': 200, 'problems': 2, 'correct': 1, 'accuracy': 0.5, 'mean_tokens': 150.0, 'cut_off': 1}
    """
    cut = [r for r in rows if r["generated_tokens"] > limit or (r.get("cut_off") and limit >= CAP)]
    correct = sum(bool(r["correct"]) for r in rows if r not in cut)
    tokens = sum(min(r["generated_tokens"], limit) for r in rows)
    n = len(rows)
    return {
        "limit": limit,
        "problems": n,
        "correct": correct,
        "accuracy": round(correct / n, 4) if n else 0.0,
        "mean_tokens": round(tokens / n, 1) if n else 0.0,
        "cut_off": len(cut),
    }


def choose(table: list[dict[str, Any]]) -> dict[str, Any]:
    """The limit after the smallest with the accuracy at the cap and few cut-offs
    (``MAX_CUT_OFF_SHARE``).

    >>> rows = [{"correct": True, "generated_tokens": 300}, {"correct": False, "generated_tokens": 100}]
    >>> choose([at_limit(rows, n) for n in LIMITS])["limit"]
    384
    """
    best = table[-1]
    for i, t in enumerate(table):
        if t["correct"] >= best["correct"] and t["cut_off"] <= MAX_CUT_OFF_SHARE * t["problems"]:
            return table[min(i + 1, len(table) - 1)]
    return best


def report(out: Path) -> dict[str, Any]:
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    summary: dict[str, Any] = {}
    for style in STYLES:
        mine = [r for r in rows if r["style"] == style]
        if not mine:
            continue
        table = [at_limit(mine, n) for n in LIMITS]
        summary[style] = {"limits": table, "chosen": choose(table)}
        print(f"{style}: {len(mine)} problems")
        for t in table:
            print(
                f"  {t['limit']:5d} tokens: {t['correct']:2d}/{t['problems']} ({100 * t['accuracy']:.1f}%) "
                f"mean tokens {t['mean_tokens']:6.1f}, cut off {t['cut_off']}"
            )
        print(f"  chosen: {summary[style]['chosen']['limit']}")
    out.with_name(out.stem + "_summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bundled-default")
    ap.add_argument("--dtype", default="int8")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/gsm8k_train_room.jsonl")
    ap.add_argument("--report", action="store_true", help="only summarise the rows")
    args = ap.parse_args()
    if not args.report:
        run(args)
    report(args.out)


def run(args: argparse.Namespace) -> None:
    import importlib

    from api.core.engine import Engine
    from api.core.evaluation import ResultsLog
    from scorers.tests import TestScorer
    from search.cache.store import MemoryCache
    from search.model.loader import load_model
    from search.problems.loaders import load_problems

    problems = load_problems(TRAIN_40)
    log = ResultsLog(args.out, lambda r: (r["style"], r["task_id"]))
    todo = log.pending([(s, p) for p in problems for s in STYLES], key=lambda sp: (sp[0], sp[1].id))
    print(f"{len(todo)} runs to do", file=sys.stderr)
    if not todo:
        return
    lm = load_model(args.model, dtype=args.dtype)
    executor = importlib.import_module("sandbox").open_executor("auto")
    commit = code_commit()

    def work(job: tuple[str, Any]) -> dict[str, Any]:
        cache = MemoryCache()
        lm.kv.clear()
        engine = Engine(lm=lm, cache=cache, _scorer=TestScorer(executor, cache=cache))
        return run_one(engine, job[1], job[0], commit)

    def show(i: int, n: int, job: tuple[str, Any], row: dict[str, Any]) -> None:
        print(
            f"[{i}/{n}] {job[0]} {row['task_id']}: {'right' if row['correct'] else 'wrong'} "
            f"answer={row['answer']} tokens={row['generated_tokens']} {row['wall_seconds']}s",
            file=sys.stderr,
            flush=True,
        )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    log.run(todo, work, show)


if __name__ == "__main__":
    main()
