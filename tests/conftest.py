"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.redis_server import RedisServer, redis_server_binary
else:
    try:
        from tests.redis_server import RedisServer, redis_server_binary
    except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
        from redis_server import RedisServer, redis_server_binary


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use a redis-server carry the ``redis`` marker, so ``-m "not redis"`` leaves them out."""
    for item in items:
        if {"redis_server", "redis_server_session"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.redis)


@pytest.fixture(scope="session")
def redis_server_session() -> Iterator[RedisServer]:
    """One real redis-server for the session; skipped if the binary is missing."""
    if redis_server_binary() is None:
        pytest.skip("redis-server not found on PATH (install the redis-server package)")
    server = RedisServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(redis_server_session: RedisServer) -> Iterator[RedisServer]:
    """The session's redis-server, alive, empty and with default memory settings for this test.

    It has ``.url``, ``.port``, ``.kill()`` (SIGKILL), ``.restart()``, ``.config_set(name, value)``,
    ``.client()`` and ``.command_calls()``; a test that kills it gets it restarted for the next test.
    """
    redis_server_session.reset()
    yield redis_server_session
    if not redis_server_session.alive:
        redis_server_session.restart()


@pytest.fixture(scope="session")
def tiny_lm():  # type: ignore[no-untyped-def]
    """A tiny random model with the bundled tokenizer (session-wide; clear its KV cache if it matters)."""
    try:
        from tests.tiny_model import make_tiny_lm
    except ImportError:
        from tiny_model import make_tiny_lm
    return make_tiny_lm()


@pytest.fixture(scope="session")
def real_lm():  # type: ignore[no-untyped-def]
    """The real bundled model (integration tests only)."""
    from search.model.loader import load_model

    return load_model("bundled-default")
