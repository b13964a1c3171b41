"""Bounded load test of the REST API on loopback: many concurrent clients, a mix of every kind of
request, for a fixed time; latency per kind, throughput, 5xx, the queue's 429s and the server's
memory over the run.

The server runs the tiny random model (bench/tiny_server.py) in its own process, so the numbers
measure the service (HTTP, validation, queue, jobs, events, batching), not a real model's speed.
Each client loops until the deadline over: greedy solves with tiny budgets, OpenAI completions and
chat calls, job submits followed by polls, server-sent event streams of jobs, cancels (DELETE) of
long jobs, and malformed bodies (which must be 4xx). Only 127.0.0.1 is ever contacted.

    .venv/bin/python bench/load.py --clients 32 --duration 120 --out bench/results/load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, bench/ is first on sys.path and its modules would shadow the project's packages.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import httpx  # noqa: E402

ADD = 'def add(a, b):\n    """Add two numbers.\n    >>> add(1, 2)\n    3\n    """\n'
PROBLEM = {"prompt": ADD, "entry_point": "add", "public_tests": ["assert add(1, 2) == 3"]}
FREE_TEXT = {"prompt": "Once upon a time", "format": "program"}
TINY = {"max_new_tokens": 8}
# kind -> weight in the mix
MIX = {
    "solve": 4,
    "completions": 3,
    "chat": 3,
    "job_poll": 3,
    "sse": 2,
    "cancel": 2,
    "malformed": 3,
}
MALFORMED: list[tuple[str, Any]] = [
    ("/v1/solve", b'{"problem": '),
    ("/v1/solve", {"problem": {"prompt": ""}}),
    ("/v1/jobs", {"problem": PROBLEM, "planner": "nope"}),
    ("/v1/jobs", {"problem": PROBLEM, "params": {"max_new_tokens": -1}}),
    ("/v1/completions", {"model": "treedec-greedy", "prompt": "x", "stream": True}),
    ("/v1/chat/completions", {"model": "treedec-greedy", "messages": []}),
    ("/v1/solve", {"problem": PROBLEM, "budget": {"max_tokens": "many"}}),
]


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    unexpected: list[str] = field(default_factory=list)

    def record(self, kind: str, status: int, seconds: float) -> None:
        self.statuses[kind][status] += 1
        self.latencies[kind].append(seconds)


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def timed(stats: Stats, kind: str, call: Any) -> httpx.Response | None:
    t0 = time.perf_counter()
    try:
        r: httpx.Response = await call
    except httpx.HTTPError as e:
        stats.errors[f"{kind}: {type(e).__name__}"] += 1
        return None
    stats.record(kind, r.status_code, time.perf_counter() - t0)
    return r


async def one_solve(c: httpx.AsyncClient, s: Stats, rng: random.Random) -> None:
    body = {"problem": PROBLEM, "planner": "greedy", "params": TINY, "options": {"include_tree": False}}
    await timed(s, "solve", c.post("/v1/solve", json=body))


async def one_completion(c: httpx.AsyncClient, s: Stats, rng: random.Random) -> None:
    body = {"model": "treedec-greedy", "prompt": f"Once upon a time {rng.randrange(1000)}", "max_tokens": 8}
    await timed(s, "completions", c.post("/v1/completions", json=body))


async def one_chat(c: httpx.AsyncClient, s: Stats, rng: random.Random) -> None:
    body = {
        "model": "treedec-greedy",
        "messages": [{"role": "user", "content": f"Write a function that adds {rng.randrange(1000)}."}],
        "max_tokens": 8,
    }
    await timed(s, "chat", c.post("/v1/chat/completions", json=body))


async def _submit(c: httpx.AsyncClient, s: Stats, body: dict[str, Any]) -> str | None:
    r = await timed(s, "job_submit", c.post("/v1/jobs", json=body))
    if r is None or r.status_code != 202:
        return None
    job_id: str = r.json()["id"]
    return job_id


async def one_job_poll(c: httpx.AsyncClient, s: Stats, rng: random.Random) -> None:
    job_id = await _submit(c, s, {"problem": PROBLEM, "params": TINY})
    if job_id is None:
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = await timed(s, "job_poll", c.get(f"/v1/jobs/{job_id}"))
        if r is None or r.status_code != 200 or r.json()["status"] in ("succeeded", "failed", "cancelled"):
            return
        await asyncio.sleep(0.05)


async def one_sse(c: httpx.AsyncClient, s: Stats, rng: random.Random) -> None:
    body = {"problem": PROBLEM, "planner": "best_of_n", "params": {"n": 2, "batch_size": 1, **TINY}}
    job_id = await _submit(c, s, body)
    if job_id is None:
        return
    t0 = time.perf_counter()
    last = ""
    try:
        async with c.stream("GET", f"/v1/jobs/{job_id}/events") as r:
            async for line in r.aiter_lines():
                if line.startswith("event:"):
                    last = line.split(":", 1)[1].strip()
            s.record("sse", r.status_code, time.perf_counter() - t0)
    except httpx.HTTPError as e:
        s.errors[f"sse: {type(e).__name__}"] += 1
        return
    if last not in ("succeeded", "failed", "cancelled"):
        s.unexpected.append(f"sse stream of {job_id} ended on {last!r}")


async def one_cancel(c: httpx.AsyncClient, s: Stats, rng: random.Random) -> None:
    job_id = await _submit(c, s, {"problem": FREE_TEXT, "params": {"max_new_tokens": 2000}})
    if job_id is None:
        return
    await asyncio.sleep(rng.uniform(0.0, 0.3))
    await timed(s, "cancel", c.delete(f"/v1/jobs/{job_id}"))


async def one_malformed(c: httpx.AsyncClient, s: Stats, rng: random.Random) -> None:
    route, body = rng.choice(MALFORMED)
    if isinstance(body, bytes):
        call = c.post(route, content=body, headers={"content-type": "application/json"})
    else:
        call = c.post(route, json=body)
    r = await timed(s, "malformed", call)
    if r is not None and not 400 <= r.status_code < 500:
        s.unexpected.append(f"malformed body to {route} answered {r.status_code}")


KINDS = {
    "solve": one_solve,
    "completions": one_completion,
    "chat": one_chat,
    "job_poll": one_job_poll,
    "sse": one_sse,
    "cancel": one_cancel,
    "malformed": one_malformed,
}


async def client_loop(url: str, deadline: float, stats: Stats, seed: int) -> None:
    rng = random.Random(seed)
    names, weights = list(MIX), list(MIX.values())
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        while time.monotonic() < deadline:
            await KINDS[rng.choices(names, weights)[0]](c, stats, rng)


async def sample_memory(pid: int, url: str, deadline: float, out: list[dict[str, Any]]) -> None:
    start = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        while time.monotonic() < deadline:
            health = (await c.get("/healthz")).json()
            out.append(
                {
                    "t": round(time.monotonic() - start, 1),
                    "rss_mb": round(rss_bytes(pid) / 2**20, 1),
                    "running": health["running"],
                    "waiting": health["waiting"],
                }
            )
            await asyncio.sleep(5)


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[str], str]:
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "tiny_server.py"),
        "--port",
        "0",
        "--max-running",
        str(args.max_running),
        "--max-waiting",
        str(args.max_waiting),
        "--max-seconds",
        "30",
        "--keep-jobs",
        str(args.keep_jobs),
        "--keep-seconds",
        str(args.keep_seconds),
        "--cache-mb",
        str(args.cache_mb),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"the server did not start: {line!r}")
    return proc, line.split()[-1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def run(args: argparse.Namespace, url: str, pid: int) -> dict[str, Any]:
    # warm-up: a few of each kind, so the baseline memory has every code path loaded
    warm = Stats()
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        rng = random.Random(0)
        for _ in range(3):
            for fn in KINDS.values():
                await fn(c, warm, rng)
    rss_before = rss_bytes(pid)
    stats = Stats()
    samples: list[dict[str, Any]] = []
    start = time.monotonic()
    deadline = start + args.duration
    await asyncio.gather(
        sample_memory(pid, url, deadline, samples),
        *(client_loop(url, deadline, stats, seed) for seed in range(args.clients)),
    )
    elapsed = time.monotonic() - start
    rss_after = rss_bytes(pid)
    await asyncio.sleep(args.settle)
    rss_settled = rss_bytes(pid)
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        metrics = (await c.get("/metrics")).text
    lines = [line for line in metrics.splitlines() if line.startswith("treedec_rejected_total ")]
    rejected = float(lines[0].split()[1]) if lines else 0.0

    kinds: dict[str, Any] = {}
    total = fivexx = four29 = 0
    for kind, lat in sorted(stats.latencies.items()):
        codes = stats.statuses[kind]
        n = sum(codes.values())
        total += n
        fivexx += sum(v for k, v in codes.items() if k >= 500)
        four29 += codes.get(429, 0)
        kinds[kind] = {
            "requests": n,
            "p50_ms": round(1000 * statistics.median(lat), 1),
            "p99_ms": round(1000 * percentile(lat, 0.99), 1),
            "max_ms": round(1000 * max(lat), 1),
            "statuses": {str(k): v for k, v in sorted(codes.items())},
        }
    half = [s["rss_mb"] for s in samples[len(samples) // 2 :]]
    return {
        "bench": "load",
        "server": "bench/tiny_server.py (tiny random Qwen2, loopback)",
        "clients": args.clients,
        "duration_s": round(elapsed, 1),
        "settings": {
            "max_running": args.max_running,
            "max_waiting": args.max_waiting,
            "keep_jobs": args.keep_jobs,
            "keep_seconds": args.keep_seconds,
            "cache_mb": args.cache_mb,
        },
        "mix": MIX,
        "requests": total,
        "throughput_rps": round(total / elapsed, 1),
        "server_errors_5xx": fivexx,
        "queue_429": four29,
        "server_rejected_metric": rejected,
        "transport_errors": dict(stats.errors),
        "unexpected": stats.unexpected[:20],
        "rss_mb": {
            "before": round(rss_before / 2**20, 1),
            "after": round(rss_after / 2**20, 1),
            "after_settle": round(rss_settled / 2**20, 1),
            "second_half_min": min(half) if half else None,
            "second_half_max": max(half) if half else None,
        },
        "rss_samples": samples,
        "kinds": kinds,
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"{'kind':<12} {'requests':>9} {'p50 ms':>9} {'p99 ms':>9}  statuses")
    for kind, k in result["kinds"].items():
        print(f"{kind:<12} {k['requests']:>9} {k['p50_ms']:>9} {k['p99_ms']:>9}  {k['statuses']}")
    rss = result["rss_mb"]
    print(
        f"{result['requests']} requests in {result['duration_s']} s = {result['throughput_rps']} req/s; "
        f"5xx: {result['server_errors_5xx']}; 429: {result['queue_429']}; "
        f"RSS MB before {rss['before']}, after {rss['after']}, settled {rss['after_settle']} "
        f"(second half {rss['second_half_min']}..{rss['second_half_max']})"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of load")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds before the last memory reading")
    ap.add_argument("--max-running", type=int, default=2)
    ap.add_argument("--max-waiting", type=int, default=16)
    ap.add_argument("--keep-jobs", type=int, default=1000)
    ap.add_argument("--keep-seconds", type=float, default=86_400.0, help="seconds a finished job is kept")
    ap.add_argument("--cache-mb", type=int, default=256, help="the server's partial-state cache bound")
    ap.add_argument("--url", help="an already running server on loopback (default: start one)")
    ap.add_argument("--pid", type=int, help="with --url: its process id, for memory readings")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load.json")
    args = ap.parse_args(argv)
    if not 1 <= args.clients <= 256 or not 1 <= args.duration <= 3600:
        ap.error("--clients must be 1..256 and --duration 1..3600 s")
    proc = None
    if args.url:
        if not args.url.startswith(("http://127.", "http://localhost", "http://[::1]")):
            ap.error("--url must be on loopback")
        if args.pid is None:
            ap.error("--url needs --pid")
        url, pid = args.url, args.pid
    else:
        proc, url = start_server(args)
        pid = proc.pid
    try:
        result = asyncio.run(run(args, url, pid))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    return 0 if result["server_errors_5xx"] == 0 and not result["unexpected"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
