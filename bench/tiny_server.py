"""Serve the REST API on the tiny random model (tests/tiny_model.py) on loopback, for load and
contract tests: every route and code path of the real server, with a model that answers in
milliseconds. ``treedec serve`` loads models by name and cannot load this one.

    .venv/bin/python bench/tiny_server.py --port 0 --max-running 2 --max-waiting 16

Prints ``listening on http://127.0.0.1:PORT`` (flushed) once it accepts connections; stops on
SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from pathlib import Path

# Run as a script, bench/ is first on sys.path and its modules would shadow the project's packages of
# the same name; the checkout's root goes first instead, so its code (and tests/tiny_model.py) is used.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import uvicorn  # noqa: E402

from api.core.engine import Engine  # noqa: E402
from api.http.schemas import ServerSettings  # noqa: E402
from api.http.server import create_app  # noqa: E402
from search.cache.store import MemoryCache  # noqa: E402
from tests.tiny_model import make_tiny_lm  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    ap.add_argument("--port", type=int, default=0, help="port (0: a free one, printed)")
    ap.add_argument("--sandbox", default="auto", help="sandbox for test execution")
    ap.add_argument("--max-running", type=int, default=2)
    ap.add_argument("--max-waiting", type=int, default=16)
    ap.add_argument("--max-seconds", type=float, default=30.0)
    ap.add_argument("--keep-jobs", type=int, default=1000)
    ap.add_argument("--keep-seconds", type=float, default=86_400.0, help="seconds a finished job is kept")
    ap.add_argument("--cache-mb", type=int, default=256, help="bound of the in-memory partial-state cache")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other ServerSettings field (repeatable), e.g. --set default_max_tokens=64",
    )
    args = ap.parse_args(argv)
    if not args.host.startswith("127.") and args.host not in ("localhost", "::1"):
        ap.error("--host must be a loopback address")

    extra = dict(item.split("=", 1) for item in args.set)
    settings = ServerSettings.model_validate(
        {
            "max_running": args.max_running,
            "max_waiting": args.max_waiting,
            "max_seconds": args.max_seconds,
            "keep_jobs": args.keep_jobs,
            "keep_seconds": args.keep_seconds,
            **extra,
        },
        strict=False,
    )
    engine = Engine(lm=make_tiny_lm(), cache=MemoryCache(max_bytes=args.cache_mb << 20), sandbox=args.sandbox)
    engine.scorer()
    app = create_app(engine, settings)
    # IPPROTO_TCP explicitly, so asyncio sets TCP_NODELAY (see api.http.server.BackgroundServer).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))

    def announce() -> None:
        while not server.started:
            time.sleep(0.02)
        print(f"listening on http://{args.host}:{sock.getsockname()[1]}", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
