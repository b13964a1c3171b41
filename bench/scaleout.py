"""Scale-out figures on the tiny model: queue throughput with 1 vs 2 workers, and the remote backend's
cost per next-token call against the in-process backend.

1. Throughput: a real redis-server, N real ``treedec worker`` processes (``tests/worker_entry.py``:
   the production worker on the tiny model, one torch thread each), an API replica on loopback;
   ``--jobs`` greedy jobs of ``--tokens`` tokens each are submitted at once and timed from the first
   POST to the last job done. Reported: jobs per minute for 1 and for 2 workers, and the load
   average around each run (the machine is shared, so the load says how much CPU was really ours).
2. Remote overhead: the same next-token step (a prefix grown by one token per call, so both
   backends reuse their KV and run one new token) through ``HFModel`` in process and through
   ``RemoteModel`` -> ``api/http/plain.py`` on loopback (uvicorn in a thread, its own tiny model
   instance); reported: median and p90 milliseconds per call, and the difference, for a batch of
   1 and of 8 prefixes.

    python bench/scaleout.py [--jobs 20] [--tokens 100] [--calls 200] [--out bench/results/scaleout.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from api.jobs.local import TERMINAL  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def throughput(workers: int, jobs: int, tokens: int) -> dict[str, Any]:
    from rq import Worker

    from api.core.engine import Engine
    from api.http.server import BackgroundServer, create_queued_app

    server = RedisServer.start()
    procs = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "worker_entry.py"), server.url, "--name", f"bench-w{i}"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        for i in range(workers)
    ]
    try:
        client = server.client()
        deadline = time.monotonic() + 180
        while len(Worker.all(connection=client)) < workers:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("workers did not start")
            time.sleep(0.2)
        app = create_queued_app(Engine(model_spec="unused"), server.url)
        with BackgroundServer(app) as url:
            http = httpx.Client(base_url=url, timeout=30)
            # One warm-up job per worker (first-call allocations), not timed.
            _run(http, [_body(10_000 + i, tokens) for i in range(workers)])
            before = load()
            cpu0 = sum(_cpu_seconds(p.pid) for p in procs)
            t0 = time.perf_counter()
            finals = _run(http, [_body(i, tokens) for i in range(jobs)])
            seconds = time.perf_counter() - t0
            cpu = sum(_cpu_seconds(p.pid) for p in procs) - cpu0
            after = load()
        ok = sum(s["status"] == "succeeded" for s in finals)
        per_job = [s["result"]["spend"]["seconds"] for s in finals if s.get("result")]
        return {
            "workers": workers,
            "jobs": jobs,
            "succeeded": ok,
            "tokens_per_job": tokens,
            "seconds": round(seconds, 2),
            "jobs_per_minute": round(60 * jobs / seconds, 1),
            "median_search_seconds": round(statistics.median(per_job), 3) if per_job else None,
            "worker_cpu_seconds": round(cpu, 2),
            "worker_cpu_per_wall_second": round(cpu / seconds, 2),
            "load_before": before,
            "load_after": after,
        }
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=20)
        server.stop()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _body(i: int, tokens: int) -> dict[str, Any]:
    return {
        "problem": {"id": f"b{i}", "prompt": f"# bench job {i}\nvalue = "},
        "planner": "greedy",
        "params": {"max_new_tokens": tokens},
        "options": {"include_tree": False},
    }


def _run(http: httpx.Client, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = [http.post("/v1/jobs", json=b).json()["id"] for b in bodies]
    pending = set(ids)
    finals: dict[str, dict[str, Any]] = {}
    while pending:
        for job_id in list(pending):
            s = http.get(f"/v1/jobs/{job_id}").json()
            if s["status"] in TERMINAL:
                finals[job_id] = s
                pending.discard(job_id)
        time.sleep(0.05)
    return [finals[j] for j in ids]


def remote_overhead(calls: int) -> dict[str, Any]:
    from api.http.plain import create_plain_app
    from api.http.server import BackgroundServer
    from search.model.remote import RemoteModel
    from tests.tiny_model import make_tiny_lm

    local, served = make_tiny_lm(), make_tiny_lm()
    out: dict[str, Any] = {"load_before": load()}
    with BackgroundServer(create_plain_app(served)) as url:
        remote = RemoteModel.connect(url, tokenizer="bundled-default")
        try:
            for batch in (1, 8):
                row: dict[str, Any] = {}
                for name, lm in (("in_process", local), ("remote", remote)):
                    local.kv.clear()
                    served.kv.clear()
                    prefixes = [local.encode(f"# row {b}\ndef f(x):\n") for b in range(batch)]
                    lm.next_token_dists(prefixes, 8)  # prefill once: every timed call adds one token
                    samples = []
                    requests_before = remote.http_requests
                    for step in range(calls):
                        prefixes = [p + [100 + (step % 50)] for p in prefixes]
                        t0 = time.perf_counter()
                        lm.next_token_dists(prefixes, 8)
                        samples.append((time.perf_counter() - t0) * 1000)
                    samples.sort()
                    row[name] = {
                        "ms_median": round(statistics.median(samples), 3),
                        "ms_p90": round(samples[int(0.9 * (len(samples) - 1))], 3),
                    }
                    if lm is remote:
                        row["http_requests_per_call"] = (remote.http_requests - requests_before) / calls
                overhead = row["remote"]["ms_median"] - row["in_process"]["ms_median"]
                row["overhead_ms_median"] = round(overhead, 3)
                out[f"batch_{batch}"] = row
        finally:
            remote.close()
    out["load_after"] = load()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scaleout.json")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-remote", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_at_start": load()}
    }
    if not args.skip_throughput:
        result["throughput"] = [throughput(n, args.jobs, args.tokens) for n in (1, 2)]
        one, two = result["throughput"]
        result["speedup_2_vs_1"] = round(two["jobs_per_minute"] / one["jobs_per_minute"], 2)
    if not args.skip_remote:
        import torch

        torch.set_num_threads(1)  # as each worker: the comparison is per call, not per core count
        result["remote_next_token"] = remote_overhead(args.calls)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
