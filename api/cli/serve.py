"""``treedec serve`` and ``treedec worker``: which app ``serve`` builds (the REST API on a model
loaded here, an API replica in front of the job queue, or the plain completions server), served
by ``api.http.serving.serve_app``; and a queue worker that runs the replicas' searches."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from api.cli.errors import UserError, user_errors
from api.cli.groups import option_groups
from api.cli.options import EngineOptions

if TYPE_CHECKING:
    from fastapi import FastAPI

    from api.http.schemas import ServerSettings


@option_groups
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
    port: int = typer.Option(8000, "--port", help="port to listen on"),
    engine: EngineOptions = EngineOptions(),
    max_running: int = typer.Option(2, "--max-running", help="searches that run at once"),
    max_waiting: int = typer.Option(16, "--max-waiting", help="searches that may wait; beyond: 429"),
    max_seconds: float = typer.Option(120.0, "--max-seconds", help="server cap on a search's wall time"),
    plain: bool = typer.Option(
        False,
        "--plain",
        help="serve only OpenAI-compatible /v1/completions of the "
        "model (no search; token ids, log-probs, entropy): a backend for --model http://...",
    ),
    queue: str | None = typer.Option(
        None,
        "--queue",
        help="redis://host:port/db: enqueue jobs for `treedec worker` processes instead of running them here",
    ),
    max_queued: int = typer.Option(1000, "--max-queued", help="with --queue: jobs that may wait (then 429)"),
) -> None:
    """Serve the REST API (solve, jobs, SSE progress, trees, OpenAI-compatible routes) on one model."""
    from api.http.schemas import ServerSettings
    from api.http.serving import serve_app

    with user_errors():
        if plain:
            app = plain_app(engine)
        else:
            settings = ServerSettings(
                max_running=max_running, max_waiting=max_waiting, max_seconds=max_seconds
            )
            app = (
                queued_app(engine, queue, settings, max_queued)
                if queue is not None
                else local_app(engine, settings)
            )
        serve_app(app, host, port)


def plain_app(engine: EngineOptions) -> FastAPI:
    """``--plain``: the model's completions, no search."""
    from api.http.plain import create_plain_app
    from search.model.loader import load_model

    return create_plain_app(load_model(engine.model, device=engine.device, dtype=engine.dtype))


def queued_app(engine: EngineOptions, queue: str, settings: ServerSettings, max_queued: int) -> FastAPI:
    """``--queue``: an API replica in front of the queue (``treedec worker`` runs the searches)."""
    from api.core.engine import Engine
    from api.http.server import create_queued_app

    replica = Engine(
        model_spec=engine.model, cache_spec=engine.cache, device=engine.device, dtype=engine.dtype
    )
    return create_queued_app(replica, queue, settings, max_queued=max_queued)


def local_app(engine: EngineOptions, settings: ServerSettings) -> FastAPI:
    """The searches run here, on the model loaded once now."""
    from api.http.server import create_loaded_app

    return create_loaded_app(
        engine.model,
        engine.cache,
        engine.sandbox,
        settings,
        device=engine.device,
        dtype=engine.dtype,
    )


@option_groups
def worker(
    queue: str = typer.Option(..., "--queue", help="redis://host:port/db of the job queue (as for serve)"),
    engine: EngineOptions = EngineOptions(),
    lease: int = typer.Option(30, "--lease", help="seconds without a heartbeat before a job is abandoned"),
    name: str | None = typer.Option(None, "--name", help="worker name (default host-pid-random)"),
    burst: bool = typer.Option(False, "--burst", help="exit when the queue is empty"),
) -> None:
    """Load the model once and run solve jobs from the Redis queue until stopped (SIGTERM: after the job)."""
    from api.jobs.worker import run_worker

    with user_errors():
        built = engine.build(None)
        try:
            run_worker(built, queue, name=name, lease_s=lease, burst=burst)
        except ConnectionError as e:
            raise UserError(str(e)) from e
