"""Two processes, one Redis: the second solves the same problems from the shared cache.

Starts its own redis-server on a free loopback port, then runs ``treedec eval`` twice in separate
processes with the same planner and problems against it, and prints forward passes, cache hit
rate and wall time of both (plus the ratio of forward passes).

    .venv/bin/python bench/cache_shared.py [--dataset humaneval:0-9] [--planner pgtd] [--set rollouts=8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.redis_server import RedisServer  # noqa: E402


def run(dataset: str, planner: str, sets: list[str], url: str, max_tokens: int) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "api.cli.app",
        "eval",
        "--dataset",
        dataset,
        "--planner",
        planner,
        "--cache",
        url,
        "--max-tokens",
        str(max_tokens),
        "--json",
    ]
    for s in sets:
        cmd += ["--set", s]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    summary = json.loads(proc.stdout)
    summary["process_wall_s"] = round(time.perf_counter() - t, 1)
    spend = summary["spend"]
    looked = spend["cache_hits"] + spend["cache_misses"]
    summary["hit_rate"] = round(spend["cache_hits"] / looked, 3) if looked else 0.0
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="humaneval:0-9")
    ap.add_argument("--planner", default="pgtd")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--max-tokens", type=int, default=3000)
    ap.add_argument("--out", default="bench/results/cache_shared.json")
    args = ap.parse_args()
    server = RedisServer.start()
    try:
        first = run(args.dataset, args.planner, args.sets, server.url, args.max_tokens)
        print("first:", json.dumps(first), flush=True)
        second = run(args.dataset, args.planner, args.sets, server.url, args.max_tokens)
        print("second:", json.dumps(second), flush=True)
    finally:
        server.stop()
    fp1, fp2 = first["spend"]["forward_passes"], second["spend"]["forward_passes"]
    result = {
        "dataset": args.dataset,
        "planner": args.planner,
        "first": first,
        "second": second,
        "forward_pass_reduction": round(1 - fp2 / fp1, 4) if fp1 else None,
        "search_seconds_ratio": round(second["spend"]["seconds"] / max(1e-9, first["spend"]["seconds"]), 3),
        "same_pass_at_1": first["passed"] == second["passed"],
    }
    print(json.dumps(result, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
