"""The REST API: solve, jobs with server-sent progress, search-tree pictures, planners, health,
metrics, and OpenAI-compatible completions (``api/http/openai_routes.py``).

``create_app(engine, settings)`` builds the app on an ``Engine`` (tests pass one with the tiny
model); ``create_loaded_app(...)`` is what ``treedec serve`` serves (``create_queued_app`` with
``--queue``). One model instance serves every request:
the engine's model is wrapped in ``search.model.batching.BatchingLM`` so concurrent searches share
batched forward passes, and each search keeps its own state (context, meter, tree).

Routes:
  POST /v1/solve            run a search, answer with program, verdicts, spend (server time cap)
  POST /v1/jobs             same body, answers at once with a job id
  GET  /v1/jobs/{id}        status and result
  GET  /v1/jobs/{id}/events progress as server-sent events
  DELETE /v1/jobs/{id}      cancel (the search stops at its next step)
  GET  /v1/jobs/{id}/tree   search tree: JSON, ?format=svg or ?format=html
  GET  /v1/planners         planners, their parameters and defaults
  GET  /healthz, /metrics   liveness, Prometheus text
  GET  /v1/models, POST /v1/completions, POST /v1/chat/completions   OpenAI-compatible
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sse_starlette.sse import EventSourceResponse

import planners
from api.core.engine import Engine
from api.http.errors import APIError, error_responses, install_handlers, internal_error
from api.http.metrics import Metrics
from api.http.openapi import server_openapi
from api.http.schemas import JobCreated, ServerSettings, SolveRequest, strict_body
from api.http.state import ServerState
from api.http.tree_view import render_html, render_svg, tree_from_report
from api.jobs.backend import TERMINAL, JobBackend, JobView
from api.jobs.local import JobManager
from sandbox.resources import health as sandbox_health
from search.model.batching import BatchingLM

log = logging.getLogger("treedec.server")


def create_app(
    engine: Engine, settings: ServerSettings | None = None, jobs: JobBackend | None = None
) -> FastAPI:
    """The app on one engine. Wraps the engine's model in a ``BatchingLM`` unless
    ``settings.batch_window_ms`` is None (loads the model now if it is not loaded). ``jobs``: a job
    backend to use instead of the in-process ``JobManager`` (``api.jobs.queue.RedisJobManager``)."""
    settings = settings or ServerSettings()
    if settings.batch_window_ms is not None and not isinstance(engine.lm, BatchingLM):
        engine.lm = BatchingLM(engine.model(), settings.batch_window_ms, settings.batch_max_rows)
    metrics = Metrics()

    def record(job: JobView) -> None:
        result = job.result
        metrics.record_search(job.planner, job.status, result.spend if result is not None else None)

    if jobs is None:
        jobs = JobManager(
            engine,
            settings.max_running,
            settings.max_waiting,
            settings.keep_jobs,
            on_done=record,
            keep_seconds=settings.keep_seconds,
        )
    elif getattr(jobs, "on_done", None) is None:
        jobs.on_done = record
    state = ServerState(engine, settings, jobs, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        jobs.shutdown()

    app = FastAPI(
        title="treedec",
        version="0.1.0",
        lifespan=lifespan,
        description="Search-based code decoding: planners over one shared model.",
    )
    app.state.treedec = state
    install_handlers(app)

    @app.middleware("http")
    async def _measure(request: Request, call_next: Any) -> Response:
        start = time.perf_counter()
        try:
            response: Response = await call_next(request)
        except Exception as e:  # what the exception handlers did not catch
            response = internal_error(e, request.url.path)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.requests.labels(path, request.method, str(response.status_code)).inc()
        metrics.latency.labels(path).observe(time.perf_counter() - start)
        return response

    _add_core_routes(app, state)
    from api.http.openai_routes import add_openai_routes

    add_openai_routes(app, state)
    app.openapi = lambda: server_openapi(app, settings, engine.lm)  # type: ignore[method-assign]
    return app


def _get_job(state: ServerState, job_id: str) -> JobView:
    job = state.jobs.get(job_id)
    if job is None:
        raise APIError(404, f"no job {job_id!r} (finished jobs are kept for a while only)", "job_id")
    return job


def _add_core_routes(app: FastAPI, state: ServerState) -> None:
    @app.post("/v1/solve", responses=error_responses(400, 413, 422, 429, 500, 504))
    async def solve(req: SolveRequest, request: Request) -> JSONResponse:
        """Run a search and answer with its result (the server caps ``budget.max_seconds``)."""
        req = await strict_body(request, SolveRequest)
        jobs = state.submit([state.solve_spec(req)])
        await state.wait(jobs)
        job = jobs[0]
        if job.status == "failed":
            raise APIError(
                500, f"the search failed (error id {job.error_id}): {job.error}", None, "internal_error"
            )
        return JSONResponse(job.answer())

    @app.post(
        "/v1/jobs",
        status_code=202,
        response_model=JobCreated,
        responses=error_responses(400, 413, 422, 429),
    )
    async def create_job(req: SolveRequest, request: Request) -> JSONResponse:
        req = await strict_body(request, SolveRequest)
        job = state.submit([state.solve_spec(req)])[0]
        return JSONResponse(
            {
                "id": job.id,
                "status": job.status,
                "events": f"/v1/jobs/{job.id}/events",
                "tree": f"/v1/jobs/{job.id}/tree",
            },
            202,
        )

    @app.get("/v1/jobs/{job_id}", responses=error_responses(404))
    async def get_job(job_id: str) -> dict[str, Any]:
        return _get_job(state, job_id).summary()

    @app.delete("/v1/jobs/{job_id}", responses=error_responses(404))
    async def cancel_job(job_id: str) -> dict[str, Any]:
        job = _get_job(state, job_id)
        was_done = job.done
        state.jobs.cancel(job_id)
        return {"id": job.id, "status": job.status, "cancel_requested": not was_done}

    @app.get(
        "/v1/jobs/{job_id}/events",
        response_class=EventSourceResponse,
        responses={
            200: {
                "description": "server-sent events: started, the planner's progress, then succeeded, "
                "failed or cancelled; data is JSON",
                "content": {
                    "text/event-stream": {
                        "schema": {
                            "type": "object",
                            "description": "one event; data is the event as JSON (seq, t, event, ...)",
                            "properties": {
                                "event": {"type": "string"},
                                "id": {"type": "string"},
                                "data": {"type": "string"},
                            },
                        }
                    }
                },
            },
            **error_responses(404),
        },
    )
    async def job_events(job_id: str, request: Request) -> EventSourceResponse:
        job = _get_job(state, job_id)

        async def stream() -> AsyncIterator[dict[str, str]]:
            sent = 0
            while True:
                done = job.done
                for event in job.events_since(sent):
                    sent += 1
                    yield {
                        "event": str(event.get("event", "message")),
                        "id": str(event["seq"]),
                        "data": json.dumps(event, default=str),
                    }
                    if event.get("event") in TERMINAL:
                        return
                if done or await request.is_disconnected():
                    return
                await asyncio.sleep(0.05)

        return EventSourceResponse(stream(), ping=15)

    @app.get(
        "/v1/jobs/{job_id}/tree",
        response_model=None,
        responses={
            200: {
                "description": "the search tree as JSON, or a picture of it (format=svg or html)",
                "content": {
                    "application/json": {"schema": {"type": "object"}},
                    "image/svg+xml": {"schema": {"type": "string"}},
                    "text/html": {"schema": {"type": "string"}},
                },
            },
            **error_responses(404, 409, 422),
        },
    )
    async def job_tree(
        job_id: str,
        format: Literal["json", "svg", "html"] = Query("json", description="json | svg | html"),
        max_nodes: int = Query(300, ge=1, le=5000),
    ) -> Response:
        job = _get_job(state, job_id)
        if not job.done:
            raise APIError(409, f"job {job_id} is {job.status}; its tree is ready when it finishes", "job_id")
        result = job.result
        if result is None:
            raise APIError(409, f"job {job_id} {job.status} without a result, so it has no tree", "job_id")
        tree = tree_from_report(result)
        title = f"{job.planner} on {job.problem.id}"
        if format == "svg":
            return Response(render_svg(tree, title, max_nodes), media_type="image/svg+xml")
        if format == "html":
            return HTMLResponse(render_html(tree, title, max_nodes))
        return JSONResponse(tree)

    @app.get("/v1/planners")
    async def list_planners() -> dict[str, Any]:
        return {"planners": planners.describe()}

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        lm = state.engine.lm
        return {
            "status": "ok",
            "model": lm.identity.name if lm is not None else None,
            "running": state.jobs.running,
            "waiting": state.jobs.active - state.jobs.running,
            "capacity": state.jobs.capacity,
            "sandbox": sandbox_health(),
        }

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={
            200: {
                "description": "Prometheus text exposition",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
    async def metrics_route() -> Response:
        body = state.metrics.render(state.engine.lm, state.jobs.running, state.jobs.active)
        return Response(body, media_type=CONTENT_TYPE_LATEST)


def create_queued_app(
    engine: Engine, queue_url: str, settings: ServerSettings | None = None, **manager_kwargs: Any
) -> FastAPI:
    """The REST app with jobs on the Redis queue at ``queue_url``: searches run on ``treedec worker``
    processes, not here, so the app neither batches nor loads the model for them (the OpenAI
    routes load it lazily, for their tokenizer, when first called)."""
    from api.jobs.queue import RedisJobManager

    settings = (settings or ServerSettings()).model_copy(update={"batch_window_ms": None})
    manager = RedisJobManager.connect(queue_url, **manager_kwargs)
    return create_app(engine, settings, jobs=manager)


def create_loaded_app(
    model: str = "bundled-default",
    cache: str | None = None,
    sandbox: str = "auto",
    settings: ServerSettings | None = None,
    device: str = "auto",
    dtype: str = "auto",
) -> FastAPI:
    """Load the model once and build the API on it (``treedec serve``; ``api.http.serving`` serves it)."""
    engine = Engine(model_spec=model, cache_spec=cache, sandbox=sandbox, device=device, dtype=dtype)
    engine.get_cache()
    engine.scorer()
    return create_app(engine, settings)


class BackgroundServer:
    """A real uvicorn server for an app in a background thread, on a free loopback port (tests,
    benchmarks). ``with BackgroundServer(app) as url: ...``"""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1") -> None:
        import socket

        import uvicorn

        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
        # without it every small response waits ~40 ms for a delayed ACK.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.bind((host, 0))
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(10)
        self._sock.close()
