"""The REST API: solve, jobs with server-sent progress, search-tree pictures, planners, health,
metrics, and OpenAI-compatible completions (``api/openai_compat.py``).

``create_app(engine, settings)`` builds the app on an ``Engine`` (tests pass one with the tiny
model); ``serve(...)`` is what ``treedec serve`` runs. One model instance serves every request:
the engine's model is wrapped in ``search.batching.BatchingLM`` so concurrent searches share
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
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError
from sse_starlette.sse import EventSourceResponse

import planners
from api.backend import TERMINAL, JobBackend, JobView, QueueFull
from api.contract import server_openapi
from api.contracts import SolveSpec
from api.engine import Engine
from api.errors import APIError, error_responses, install_handlers, internal_error, validation_error
from api.jobs import JobManager
from api.metrics import Metrics
from api.schemas import JobCreated, ServerSettings, SolveRequest, strict_body
from api.tree_view import render_html, render_svg, tree_from_report
from planners.base import PlannerError
from sandbox.resources import health as sandbox_health
from search.batching import BatchingLM
from search.budget import Budget
from search.problem import Problem

log = logging.getLogger("treedec.server")
SOLVE_GRACE_SECONDS = 60.0  # evaluation after the search (sandbox) may take a little longer


@dataclass
class ServerState:
    engine: Engine
    settings: ServerSettings
    jobs: JobBackend
    metrics: Metrics

    # ----- validation shared by /v1/solve, /v1/jobs and the OpenAI routes ------------------------
    def check_planner(
        self, name: str, params: dict[str, Any], param_name: str = "planner", params_prefix: str = "params"
    ) -> type[planners.Planner]:
        try:
            cls = planners.get(name)
        except PlannerError as e:
            raise APIError(400, str(e), param_name) from e
        try:
            cls(cls.Params.model_validate(params, strict=True))  # JSON types only, as the schema says
        except ValidationError as e:
            raise validation_error(e, params_prefix) from e
        self.check_prm(params, params_prefix)
        for param in cls.required_params(self.engine.lm):
            if params.get(param) is None:
                raise APIError(
                    422,
                    f"invalid value for '{params_prefix}.{param}': planner {name!r} needs it with this model",
                    f"{params_prefix}.{param}",
                )
        return cls

    def check_prm(self, params: dict[str, Any], prefix: str) -> None:
        """A process reward model only from the server's list (``settings.prm_models``)."""
        allowed = self.settings.prm_models
        if params.get("scorer") == "prm" and not allowed:
            raise APIError(
                422,
                f"invalid value for '{prefix}.scorer': this server loads no process reward model; use 'code'",
                f"{prefix}.scorer",
            )
        prm = params.get("prm")
        if (prm is not None and prm not in allowed) or (params.get("scorer") == "prm" and prm is None):
            raise APIError(
                422,
                f"invalid value for '{prefix}.prm': give one of this server's models: {', '.join(allowed)}"
                if allowed
                else f"invalid value for '{prefix}.prm': this server loads no process reward model",
                f"{prefix}.prm",
            )

    def check_problem(self, problem: Problem, cls: type[planners.Planner], prefix: str = "problem") -> None:
        s = self.settings
        if len(problem.prompt) > s.max_prompt_chars:
            raise APIError(
                413,
                f"'{prefix}.prompt' is {len(problem.prompt)} characters; this server accepts at "
                f"most {s.max_prompt_chars}",
                f"{prefix}.prompt",
            )
        for name in ("public_tests", "hidden_tests"):
            tests = getattr(problem, name)
            if len(tests) > s.max_tests:
                raise APIError(
                    413,
                    f"'{prefix}.{name}' has {len(tests)} tests; at most {s.max_tests} are accepted",
                    f"{prefix}.{name}",
                )
            size = sum(len(t.model_dump_json()) for t in tests)
            if size > s.max_tests_chars:
                raise APIError(
                    413,
                    f"'{prefix}.{name}' is {size} characters; at most {s.max_tests_chars}",
                    f"{prefix}.{name}",
                )
        if cls.needs_sandbox and not problem.public_tests:
            raise APIError(
                422,
                f"planner {cls.name!r} runs public tests: give '{prefix}.public_tests'",
                f"{prefix}.public_tests",
            )

    def effective_budget(self, budget: Budget, prefix: str = "budget") -> Budget:
        s = self.settings
        if budget.max_tokens is not None and budget.max_tokens > s.max_budget_tokens:
            raise APIError(
                422,
                f"invalid value for '{prefix}.max_tokens': {budget.max_tokens} is above this "
                f"server's limit of {s.max_budget_tokens}",
                f"{prefix}.max_tokens",
            )
        seconds = min(budget.max_seconds or s.max_seconds, s.max_seconds)
        tokens = budget.max_tokens if budget.max_tokens is not None else s.default_max_tokens
        return budget.model_copy(update={"max_seconds": seconds, "max_tokens": tokens})

    def submit(self, specs: list[SolveSpec]) -> list[JobView]:
        try:
            return list(self.jobs.submit_many(specs))
        except QueueFull as e:
            self.metrics.rejected.inc(len(specs))
            raise APIError(
                429,
                f"the server is busy ({e}); retry later",
                None,
                "rate_limit_error",
                headers={"Retry-After": str(self.settings.retry_after_seconds)},
            ) from e

    async def wait(self, jobs: list[JobView]) -> None:
        """Wait for jobs; cancel them if the client goes away or the server's time cap passes."""
        timeout = max(j.budget.max_seconds or self.settings.max_seconds for j in jobs) + SOLVE_GRACE_SECONDS
        futures = [asyncio.wrap_future(j.future) for j in jobs if j.future is not None]
        try:
            await asyncio.wait_for(asyncio.gather(*futures), timeout)
        except TimeoutError as e:
            for j in jobs:
                j.cancel.set()
            raise APIError(
                504,
                f"the search did not finish within {timeout:.0f} s; it was cancelled",
                None,
                "timeout_error",
            ) from e
        except asyncio.CancelledError:
            for j in jobs:
                j.cancel.set()
            raise

    def solve_spec(self, req: SolveRequest) -> SolveSpec:
        cls = self.check_planner(req.planner, req.params)
        try:
            problem = req.problem.to_problem()
        except ValidationError as e:
            raise _problem_error(e) from e
        self.check_problem(problem, cls)
        return SolveSpec(
            problem=problem,
            planner=req.planner,
            params=req.params,
            budget=self.effective_budget(req.budget),
            include_tree=req.options.include_tree,
            evaluate_hidden=req.options.evaluate_hidden and self.settings.evaluate_hidden,
            prompt_style=req.prompt_style,
        )


def _problem_error(e: ValidationError) -> APIError:
    """Problem-level checks (empty prompt, tests without an entry point) name their field."""
    first = e.errors()[0]
    msg = str(first.get("msg", ""))
    for field in ("entry_point", "prompt"):
        if field in msg:
            return APIError(
                422,
                f"invalid value for 'problem.{field}': {msg.removeprefix('Value error, ')}",
                f"problem.{field}",
            )
    return validation_error(e, "problem")


def create_app(
    engine: Engine, settings: ServerSettings | None = None, jobs: JobBackend | None = None
) -> FastAPI:
    """The app on one engine. Wraps the engine's model in a ``BatchingLM`` unless
    ``settings.batch_window_ms`` is None (loads the model now if it is not loaded). ``jobs``: a job
    backend to use instead of the in-process ``JobManager`` (``api.queue.RedisJobManager``)."""
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
    from api.openai_compat import add_openai_routes

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


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    model: str = "bundled-default",
    cache: str | None = None,
    sandbox: str = "auto",
    settings: ServerSettings | None = None,
    device: str = "auto",
    dtype: str = "auto",
) -> None:
    """Load the model once and serve the API with uvicorn (``treedec serve``)."""
    import uvicorn

    engine = Engine(model_spec=model, cache_spec=cache, sandbox=sandbox, device=device, dtype=dtype)
    engine.get_cache()
    engine.scorer()
    app = create_app(engine, settings)
    uvicorn.run(app, host=host, port=port, log_level="info")


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
