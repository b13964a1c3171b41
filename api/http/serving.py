"""The one place an app is served with uvicorn: ``treedec serve`` runs the REST app, an API replica
in front of the job queue, or the plain completions server through ``serve_app``."""

from __future__ import annotations

from fastapi import FastAPI


def serve_app(app: FastAPI, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``app`` on ``host:port`` with uvicorn until stopped."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info")
