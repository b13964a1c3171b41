"""Jobs on the Redis queue: real redis-server, real worker processes, the real API server on loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from api.core.contracts import SolveSpec
from api.core.engine import Engine
from api.http.server import BackgroundServer, create_queued_app
from api.jobs.local import TERMINAL, QueueFull
from api.jobs.queue import QueueUnavailable, RedisJobManager
from search.limits.budget import Budget
from search.model.lm import GenerationParams
from search.problems.problem import Problem

ROOT = Path(__file__).resolve().parent.parent
TOKENS = 60  # per job: long enough that a kill lands mid-job, short enough for a quick test


def job_body(i: int) -> dict[str, Any]:
    # No entry point and no stop strings: greedy runs exactly TOKENS tokens (deterministic length).
    return {
        "problem": {"id": f"p{i}", "prompt": f"# job {i}\nvalue = "},
        "planner": "greedy",
        "params": {"max_new_tokens": TOKENS},
        "options": {"include_tree": False},
    }


def start_worker(url: str, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "worker_entry.py"), url, "--lease", "3", "--name", name],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def rq_workers(client: redis.Redis) -> dict[str, Any]:
    from rq import Worker

    return {w.name: w for w in Worker.all(connection=client)}


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def workers(redis_server: Any) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [start_worker(redis_server.url, f"w{i}") for i in range(2)]
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


def test_twenty_jobs_survive_a_killed_worker_and_an_api_restart(
    redis_server: Any, workers: list[Any], tiny_lm: Any
) -> None:
    client = redis_server.client()
    # While the workers load, the in-process reference: what each job's greedy program must be.
    tiny_lm.kv.clear()
    prompts = [job_body(i)["problem"]["prompt"] for i in range(21)]
    reference = tiny_lm.rollouts(
        [tiny_lm.encode(p) for p in prompts], GenerationParams(max_new_tokens=TOKENS)
    )
    expected = {f"p{i}": prompts[i] + r.text for i, r in enumerate(reference)}
    wait_for(
        lambda: len(rq_workers(client)) == 2 or any(w.poll() is not None for w in workers),
        90,
        "two workers to register",
    )
    assert all(w.poll() is None for w in workers), [
        w.stderr.read().decode()[-2000:] for w in workers if w.stderr
    ]

    app = create_queued_app(Engine(model_spec="unused-by-api-replicas"), redis_server.url)
    with BackgroundServer(app) as url:
        http = httpx.Client(base_url=url, timeout=30)
        ids = []
        for i in range(20):
            resp = http.post("/v1/jobs", json=job_body(i))
            assert resp.status_code == 202, resp.text
            ids.append(resp.json()["id"])

        def statuses() -> dict[str, dict[str, Any]]:
            return {j: http.get(f"/v1/jobs/{j}").json() for j in ids}

        # Kill w0 with SIGKILL while it runs a job (after a few jobs have finished).
        victim: dict[str, str] = {}

        def w0_is_mid_job() -> bool:
            done = sum(s["status"] in TERMINAL for s in statuses().values())
            current = rq_workers(client)["w0"].get_current_job_id()
            if done >= 4 and current is not None:
                workers[0].send_signal(signal.SIGKILL)
                victim["id"] = current
                return True
            return False

        wait_for(w0_is_mid_job, 60, "w0 to be mid-job after 4 finished jobs")
        workers[0].wait(timeout=10)
        wait_for(lambda: all(s["status"] in TERMINAL for s in statuses().values()), 60, "all 20 jobs to end")
        final = statuses()

        # Every job ended with a result or an explicit failure; none lost.
        assert sorted(final) == sorted(ids) and len(set(ids)) == 20
        for s in final.values():
            assert s["status"] in ("succeeded", "failed")
            if s["status"] == "failed":
                assert "lease" in s["error"]
            else:
                assert s["result"]["program"] == expected[s["problem_id"]]
        # The job w0 was running was taken over by w1 and finished there, with one result.
        lost = final[victim["id"]]
        assert (lost["status"], lost["attempts"], lost["worker"]) == ("succeeded", 2, "w1")
        store = app.state.treedec.jobs.store
        events = store.events(victim["id"], 0)
        kinds = [e["event"] for e in events]
        assert kinds.count("started") == 2 and "requeued" in kinds
        assert [k for k in kinds if k in TERMINAL] == ["succeeded"]  # one terminal event, never two
        for job_id in ids:
            assert [e["event"] for e in store.events(job_id, 0) if e["event"] in TERMINAL] == [
                final[job_id]["status"]
            ]
        # The progress stream works from Redis for a job this replica did not run.
        with http.stream("GET", f"/v1/jobs/{victim['id']}/events") as stream:
            body = "".join(stream.iter_text())
        assert "event: requeued" in body and "event: succeeded" in body
        # /v1/solve waits on the queued job's future and answers with the worker's result.
        solved = http.post("/v1/solve", json=job_body(20))
        assert solved.status_code == 200, solved.text
        assert solved.json()["program"] == expected["p20"]

    # A new API replica (the old one is gone) answers from Redis with the same results.
    with BackgroundServer(create_queued_app(Engine(model_spec="unused"), redis_server.url)) as url2:
        again = {j: httpx.get(f"{url2}/v1/jobs/{j}", timeout=30).json() for j in ids}
    assert {j: s["result"]["program"] for j, s in again.items()} == {
        j: s["result"]["program"] for j, s in final.items()
    }


def test_new_jobs_get_503_while_redis_is_down(redis_server: Any) -> None:
    app = create_queued_app(Engine(model_spec="unused"), redis_server.url)
    with BackgroundServer(app) as url:
        http = httpx.Client(base_url=url, timeout=30)
        first = http.post("/v1/jobs", json=job_body(0))
        assert first.status_code == 202
        redis_server.kill()
        resp = http.post("/v1/jobs", json=job_body(1))
        assert resp.status_code == 503
        message = resp.json()["error"]["message"]
        assert message.startswith(f"the job queue (Redis at {redis_server.url}) is unavailable")
        assert resp.headers["retry-after"] == "5"
        assert http.get(f"/v1/jobs/{first.json()['id']}").status_code == 503
        redis_server.restart()
        assert http.post("/v1/jobs", json=job_body(2)).status_code == 202  # back once Redis is


def test_connecting_to_a_dead_redis_is_a_one_line_error(redis_server: Any) -> None:
    redis_server.kill()
    with pytest.raises(
        QueueUnavailable, match=r"the job queue \(Redis at redis://127.0.0.1:\d+/0\) is unavailable"
    ):
        RedisJobManager.connect(redis_server.url)


def test_a_queued_job_can_be_cancelled(redis_server: Any) -> None:
    app = create_queued_app(Engine(model_spec="unused"), redis_server.url)
    with BackgroundServer(app) as url:
        http = httpx.Client(base_url=url, timeout=30)
        job_id = http.post("/v1/jobs", json=job_body(0)).json()["id"]
        resp = http.delete(f"/v1/jobs/{job_id}")
        assert resp.json()["cancel_requested"] is True
        assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
    manager = app.state.treedec.jobs
    assert manager.queue.count == 0
    assert [e["event"] for e in manager.store.events(job_id, 0)] == ["cancelled"]


def test_a_full_queue_refuses_with_queue_full(redis_server: Any) -> None:
    manager = RedisJobManager.connect(redis_server.url, max_queued=2)
    try:
        spec = SolveSpec(problem=Problem(id="p", prompt="x = "), planner="greedy", params={}, budget=Budget())
        manager.submit_many([spec, spec])
        with pytest.raises(QueueFull, match="2 searches waiting"):
            manager.submit(spec)
        assert manager.queue.count == 2
    finally:
        manager.shutdown()


def abandon_one_job(redis_server: Any, retries: int) -> tuple[RedisJobManager, Any, str]:
    """Enqueue a job and have an in-process worker take it and then go silent (as a killed one does:
    no more lease renewals); return the manager, a second worker, and the job id."""
    from api.jobs.worker import TreedecWorker, queue_for

    manager = RedisJobManager.connect(redis_server.url, retries=retries)
    job = manager.submit(SolveSpec(problem=Problem(id="p", prompt="x = "), planner="greedy", budget=Budget()))
    client = manager.client
    dead = TreedecWorker(
        [queue_for(client, "treedec")],
        connection=client,
        name="dead",
        lease_s=3,
        serializer=manager.queue.serializer,
    )
    taken = dead.dequeue_job_and_maintain_ttl(1)
    assert taken is not None and taken[0].id == job.id
    execution = dead.prepare_execution(taken[0])
    dead.prepare_job_execution(taken[0])
    del execution  # the worker "dies" here: nobody renews its lease
    manager.store.start(job.id, "dead")
    reaper = TreedecWorker(
        [queue_for(client, "treedec")],
        connection=client,
        name="reaper",
        lease_s=3,
        serializer=manager.queue.serializer,
    )
    return manager, reaper, job.id


def test_an_abandoned_job_with_no_retries_left_is_failed_with_the_reason(redis_server: Any) -> None:
    manager, reaper, job_id = abandon_one_job(redis_server, retries=0)
    try:
        reaper.reap()
        assert manager.get(job_id).status == "running"  # lease not yet expired: nothing happens
        time.sleep(3.5)
        reaper._last_reap = 0.0
        reaper.reap()
        job = manager.get(job_id)
        assert job is not None and job.status == "failed"
        assert job.error == (
            "the worker running it stopped renewing its lease (killed or lost); gave up after 1 attempt(s)"
        )
        assert job.error_id == "worker-lost"
        assert [e["event"] for e in job.events_since(0)] == ["lost", "failed"]
    finally:
        manager.shutdown()


def test_an_abandoned_job_with_retries_left_goes_back_on_the_queue(redis_server: Any) -> None:
    manager, reaper, job_id = abandon_one_job(redis_server, retries=1)
    try:
        time.sleep(3.5)
        reaper.reap()
        assert manager.queue.get_job_ids() == [job_id]
        job = manager.get(job_id)
        assert job is not None and job.status == "running"  # until a worker takes it again
        events = job.events_since(0)
        assert events[0]["event"] == "requeued" and "lease" in events[0]["reason"]
    finally:
        manager.shutdown()


def test_a_worker_refuses_an_unreachable_queue(redis_server: Any) -> None:
    from api.jobs.worker import run_worker

    redis_server.kill()
    engine = Engine(model_spec="never-loaded")
    with pytest.raises(ConnectionError, match="the job queue .* is unavailable"):
        run_worker(engine, redis_server.url)
    assert engine.lm is None  # refused before loading the model


def test_job_specs_round_trip_through_json() -> None:
    from api.jobs.queue import spec_from_json, spec_to_json

    spec = SolveSpec(
        problem=Problem(
            id="p",
            prompt="def f():\n",
            entry_point="f",
            public_tests=[{"kind": "function", "code": "assert f() is None"}],
        ),
        planner="greedy",
        params={"max_new_tokens": 5},
        budget=Budget(max_tokens=9),
        include_tree=False,
        evaluate_hidden=True,
        prompt_style="chat-prefill",
    )
    wire = spec_to_json(spec)
    assert list(wire) == [
        "problem",
        "planner",
        "params",
        "budget",
        "include_tree",
        "evaluate_hidden",
        "prompt_style",
    ]
    back = spec_from_json(json.loads(json.dumps(wire)))
    assert back == spec
