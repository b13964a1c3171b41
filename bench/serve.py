"""Serving throughput: N solve requests to a real server, one after another vs all at once.

Starts the REST server in process (uvicorn on a free loopback port) on the real bundled model,
sends the first N HumanEval prompts to ``POST /v1/solve`` with the greedy planner, first
sequentially, then concurrently (a fresh cache and KV cache before each phase so neither phase
is served from the other's cache), and writes requests/s, generated tokens/s, p50/p99 latency
and the batching wrapper's merge counts as JSON.

    .venv/bin/python bench/serve.py --requests 8 --max-new-tokens 64 --out bench/results/serve.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

# Run as a script, bench/ is first on sys.path and its modules (bench/sandbox.py...) would shadow
# the project's packages of the same name.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import httpx  # noqa: E402

from api.core.engine import Engine  # noqa: E402
from api.http.schemas import ServerSettings  # noqa: E402
from api.http.server import BackgroundServer, create_app  # noqa: E402
from search.cache.store import MemoryCache  # noqa: E402
from search.problems.loaders import humaneval  # noqa: E402


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _phase(url: str, bodies: list[dict[str, Any]], concurrent: bool) -> dict[str, Any]:
    latencies: list[float] = [0.0] * len(bodies)
    tokens: list[int] = [0] * len(bodies)
    completions: list[str] = [""] * len(bodies)

    def one(i: int, client: httpx.Client) -> None:
        t0 = time.perf_counter()
        r = client.post("/v1/solve", json=bodies[i])
        r.raise_for_status()
        latencies[i] = time.perf_counter() - t0
        tokens[i] = r.json()["spend"]["generated_tokens"]
        completions[i] = r.json()["completion"]
        print(
            f"{'concurrent' if concurrent else 'sequential'} #{i}: {latencies[i]:.1f} s, {tokens[i]} tokens",
            file=sys.stderr,
            flush=True,
        )

    start = time.perf_counter()
    with httpx.Client(base_url=url, timeout=600) as client:
        if concurrent:
            threads = [threading.Thread(target=one, args=(i, client)) for i in range(len(bodies))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        else:
            for i in range(len(bodies)):
                one(i, client)
    wall = time.perf_counter() - start
    return {
        "wall_seconds": round(wall, 2),
        "requests_per_second": round(len(bodies) / wall, 4),
        "generated_tokens": sum(tokens),
        "tokens_per_second": round(sum(tokens) / wall, 2),
        "latency_p50": round(statistics.median(latencies), 2),
        "latency_p99": round(_percentile(latencies, 0.99), 2),
        "completions": completions,
    }


def _reset(engine: Engine) -> None:
    engine.cache = MemoryCache()
    lm: Any = engine.lm
    lm.kv.clear()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--model", default="bundled-default")
    ap.add_argument("--window-ms", type=float, default=10.0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    engine = Engine(model_spec=args.model)
    settings = ServerSettings(
        max_running=args.requests,
        max_waiting=args.requests,
        max_seconds=3600,
        batch_window_ms=args.window_ms,
        batch_max_rows=max(8, args.requests),
    )
    app = create_app(engine, settings)
    problems = humaneval(range(args.requests))
    bodies = [
        {
            "problem": {"id": p.id, "prompt": p.prompt, "entry_point": p.entry_point},
            "planner": "greedy",
            "params": {"max_new_tokens": args.max_new_tokens},
            "options": {"include_tree": False},
        }
        for p in problems
    ]
    with BackgroundServer(app) as url:
        _reset(engine)
        sequential = _phase(url, bodies, concurrent=False)
        _reset(engine)
        lm: Any = engine.lm
        before = lm.batching.merged_calls, lm.batching.batches
        concurrent = _phase(url, bodies, concurrent=True)
        merged, batches = lm.batching.merged_calls - before[0], lm.batching.batches - before[1]
    same = sum(
        a == b for a, b in zip(sequential.pop("completions"), concurrent.pop("completions"), strict=True)
    )
    result = {
        "model": engine.lm.identity.name if engine.lm else args.model,
        "planner": "greedy",
        "requests": args.requests,
        "max_new_tokens": args.max_new_tokens,
        "window_ms": args.window_ms,
        "sequential": sequential,
        "concurrent": concurrent,
        "speedup": round(sequential["wall_seconds"] / concurrent["wall_seconds"], 2),
        "concurrent_batches": batches,
        "concurrent_merged_calls": merged,
        "identical_completions": f"{same}/{args.requests}",
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
