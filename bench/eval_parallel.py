"""Problems side by side (``treedec eval --parallel``, ``bench/quality.py --parallel``) against one
at a time: the same problems, the same planner, one model in one process.

Serial runs each problem alone on the plain model; parallel runs ``--parallel`` problems at a time
through one ``BatchingLM``, so their forward passes are shared: greedy calls only (the server's
default), and with ``--samples`` also with sampled calls merged (``merge_samples``, as
``bench/quality.py --parallel`` runs). Reported per mode: wall seconds and this process's CPU
seconds (less sensitive to other load on the machine than wall time), each mode's ratio to serial,
and how many problems got the same program (or answer text) as serially (batched arithmetic can
flip a near-tie token).

    OMP_NUM_THREADS=1 .venv/bin/python bench/eval_parallel.py --planner greedy --problems humaneval:0-7
    OMP_NUM_THREADS=1 .venv/bin/python bench/eval_parallel.py --planner astar --style chain-of-thought \
        --problems gsm8k-train:376,1014,1305,1907 --dtype int8 --samples

``--parallel 4,8 --no-serial`` compares widths instead: each width runs the problems side by side
with sampled calls merged, and the ratios are against the first width.
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
        return {
            "id": problem.id,
            "program": report.program or report.completion,  # an answer problem's text is its completion
            "tokens": report.spend.generated_tokens,
            "passed": report.final_answer.correct
            if report.final_answer is not None
            else report.hidden is not None and report.hidden.all_passed,
        }

    log = ResultsLog(None, key=lambda row: row["id"])
    wall, cpu = time.perf_counter(), time.process_time()
    log.run(problems, solve, workers=workers)
    return {
        "wall_s": round(time.perf_counter() - wall, 2),
        "cpu_s": round(time.process_time() - cpu, 2),
        "rows": log.done,
    }


def _widths(text: str) -> list[int]:
    """``4`` or ``4,8``: how many problems run side by side, each at least 1."""
    try:
        widths = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"every width must be at least 1, not {text!r}")
    return widths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--planner", default="greedy")
    ap.add_argument("--style", default="chat-prefill")
    ap.add_argument("--problems", default="humaneval:0-7", help="a problem list, e.g. humaneval:0-7")
    ap.add_argument(
        "--parallel", type=_widths, default=[4], help="problems at a time; a list (4,8) compares widths"
    )
    ap.add_argument("--no-serial", action="store_true", help="compare the --parallel widths only")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--samples", action="store_true", help="also run with sampled calls merged")
    ap.add_argument("--out", type=Path, default=None, help="append the result as one JSON line")
    args = ap.parse_args()

    from search.model.batching import BatchingLM
    from search.model.loader import load_model
    from search.problems.loaders import load_problems

    spec = args.problems if ":" in args.problems else f"humaneval:{args.problems}"
    problems = load_problems(spec)
    lm = load_model("bundled-default", dtype=args.dtype)
    run(lm, problems[:1], "greedy", args.style, 1)  # warm up
    widths = args.parallel
    modes: dict[str, tuple[Any, int]] = {}
    if args.no_serial:
        for width in widths:
            modes[f"parallel_{width}"] = (BatchingLM(lm, merge_samples=True), width)
    else:
        modes = {"serial": (lm, 1), "side_by_side": (BatchingLM(lm), widths[0])}
        if args.samples:
            modes["side_by_side_samples_merged"] = (BatchingLM(lm, merge_samples=True), widths[0])
    runs = {}
    for name, (model, width) in modes.items():
        lm.kv.clear()  # every mode starts from an empty KV cache
        runs[name] = run(model, problems, args.planner, args.style, width)
    first = next(iter(modes))  # the baseline every other mode's ratios are against
    baseline = runs[first]
    result: dict[str, Any] = {
        "planner": args.planner,
        "style": args.style,
        "problems": spec,
        "parallel": widths[0] if len(widths) == 1 else ",".join(map(str, widths)),
        "dtype": args.dtype,
    }
    for name, r in runs.items():
        rows = r["rows"]
        result[name] = {
            "wall_s": r["wall_s"],
            "cpu_s": r["cpu_s"],
            "tokens": sum(row["tokens"] for row in rows.values()),
            "passed": sum(bool(row["passed"]) for row in rows.values()),
        }
        if name != first:
            same = sum(baseline["rows"][p.id]["program"] == rows[p.id]["program"] for p in problems)
            result[name].update(
                cpu_ratio=round(baseline["cpu_s"] / max(r["cpu_s"], 1e-9), 2),
                wall_ratio=round(baseline["wall_s"] / max(r["wall_s"], 1e-9), 2),
                same_program=f"{same}/{len(problems)}",
            )
    print(json.dumps(result, indent=1))
    if args.out is not None:
        with args.out.open("a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
