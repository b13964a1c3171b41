"""Same results before and after a refactor: every planner on the real bundled model.

For each planner (at its defaults, default budget) and each problem, one JSON line with the
program, generated and processed tokens, forward passes and executions. Run at two commits and
compare the files: ``python bench/refactor_check.py --out A.jsonl`` then
``python bench/refactor_check.py --compare A.jsonl B.jsonl``. Resumable: rows already in ``--out``
are skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROBLEMS = [0, 10, 33, 100, 162]
PLANNERS = [
    "greedy",
    "beam",
    "sampling",
    "best_of_n",
    "pgtd",
    "adadec",
    "astar",
    "vstar",
    "styles",
    "cascade",
]
FIELDS = ("generated_tokens", "processed_tokens", "forward_passes", "executions")


ROOMS = (ROOT / "search" / "problems").is_dir()  # the layout after the rooms refactor (#27)


def engine():  # type: ignore[no-untyped-def]
    if ROOMS:
        from api.core.engine import Engine
    else:
        from api.engine import Engine
    return Engine(dtype="bf16")  # the before rows were bf16 (then the only CPU format)


def load(ref: str):  # type: ignore[no-untyped-def]
    if ROOMS:
        from search.problems.loaders import load_problem
    else:
        from search.loaders import load_problem
    return load_problem(ref)


def run(out: Path, planners: list[str], problems: list[int]) -> None:
    done = set()
    if out.exists():
        done = {(r["planner"], r["problem"]) for r in map(json.loads, out.read_text().splitlines())}
    eng = engine()
    for name in planners:
        for index in problems:
            ref = f"humaneval:{index}"
            if (name, ref) in done:
                continue
            # each row on a fresh cache and an empty KV cache: rows are independent of what ran before
            # (KV reuse changes processed tokens, and bf16 near-ties can turn on it)
            eng.cache, eng._scorer = None, None
            if eng.lm is not None:
                eng.lm.kv.clear()
            report = eng.solve(load(ref), planner=name, prompt_style="chat-prefill", include_tree=False)
            spend = report.spend.to_dict()
            row = {"planner": name, "problem": ref, "program": report.program}
            row.update({k: spend.get(k) for k in FIELDS})
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(name, ref, {k: row[k] for k in FIELDS}, flush=True)


def compare(a: Path, b: Path) -> int:
    rows_a = {(r["planner"], r["problem"]): r for r in map(json.loads, a.read_text().splitlines())}
    rows_b = {(r["planner"], r["problem"]): r for r in map(json.loads, b.read_text().splitlines())}
    diff = 0
    print("| planner | problems | same program | same tokens | same forward passes | same executions |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in dict.fromkeys(k[0] for k in rows_a):
        keys = [k for k in rows_a if k[0] == name and k in rows_b]
        same = [
            sum(rows_a[k][f] == rows_b[k][f] for k in keys)
            for f in ("program", "generated_tokens", "forward_passes", "executions")
        ]
        diff += sum(len(keys) - s for s in same)
        print(f"| {name} | {len(keys)} | " + " | ".join(str(s) for s in same) + " |")
    return 1 if diff else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    parser.add_argument("--planners", default=",".join(PLANNERS))
    parser.add_argument("--problems", default=",".join(map(str, PROBLEMS)))
    parser.add_argument("--compare", nargs=2, type=Path)
    args = parser.parse_args()
    if args.compare:
        raise SystemExit(compare(*args.compare))
    run(args.out, args.planners.split(","), [int(p) for p in args.problems.split(",")])
