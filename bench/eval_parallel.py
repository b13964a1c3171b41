"""Problems side by side (``treedec eval --parallel``, ``bench/quality.py --parallel``) against one
at a time: the same problems, the same planner, one model in one process.

Serial runs each problem alone on the plain model; parallel runs ``--parallel`` problems at a time
through one ``BatchingLM``, so their forward passes are shared. Reported per mode: wall seconds
and this process's CPU seconds (less sensitive to other load on the machine than wall time), the
ratio of the two modes, and how many problems got the same program both ways (batched arithmetic
can flip a near-tie token).

    OMP_NUM_THREADS=1 .venv/bin/python bench/eval_parallel.py --planner greedy --problems 0-7 --parallel 4
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


def run(lm: Any, problems: list[Any], planner: str, style: str, workers: int) -> dict[str, Any]:
    from api.core.engine import Engine
    from api.core.evaluation import ResultsLog
    from search.limits.budget import Budget

    engine = Engine(lm=lm)

    def solve(problem: Any) -> dict[str, Any]:
        report = engine.solve(problem, planner, {}, Budget(), include_tree=False, prompt_style=style)
        return {"id": problem.id, "program": report.program, "tokens": report.spend.generated_tokens}

    log = ResultsLog(None, key=lambda row: row["id"])
    wall, cpu = time.perf_counter(), time.process_time()
    log.run(problems, solve, workers=workers)
    return {
        "wall_s": round(time.perf_counter() - wall, 2),
        "cpu_s": round(time.process_time() - cpu, 2),
        "rows": log.done,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--planner", default="greedy")
    ap.add_argument("--style", default="chat-prefill")
    ap.add_argument("--problems", default="0-7", help="HumanEval indices: A-B or a list")
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--out", type=Path, default=None, help="append the result as one JSON line")
    args = ap.parse_args()

    from search.model.batching import BatchingLM
    from search.model.loader import load_model
    from search.problems.loaders import load_problems

    problems = load_problems(f"humaneval:{args.problems}")
    lm = load_model("bundled-default")
    batched = BatchingLM(lm)
    run(lm, problems[:1], args.planner, args.style, 1)  # warm up
    lm.kv.clear()  # both modes start from an empty KV cache
    serial = run(lm, problems, args.planner, args.style, 1)
    lm.kv.clear()
    parallel = run(batched, problems, args.planner, args.style, args.parallel)
    same = sum(serial["rows"][p.id]["program"] == parallel["rows"][p.id]["program"] for p in problems)
    result = {
        "planner": args.planner,
        "style": args.style,
        "problems": args.problems,
        "parallel": args.parallel,
        "serial": {k: v for k, v in serial.items() if k != "rows"},
        "side_by_side": {k: v for k, v in parallel.items() if k != "rows"},
        "cpu_ratio": round(serial["cpu_s"] / max(parallel["cpu_s"], 1e-9), 2),
        "wall_ratio": round(serial["wall_s"] / max(parallel["wall_s"], 1e-9), 2),
        "same_program": f"{same}/{len(problems)}",
        "tokens": {
            "serial": sum(r["tokens"] for r in serial["rows"].values()),
            "side_by_side": sum(r["tokens"] for r in parallel["rows"].values()),
        },
    }
    print(json.dumps(result, indent=1))
    if args.out is not None:
        with args.out.open("a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
