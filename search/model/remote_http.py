"""JSON over HTTP to one server, for sync callers: the transport ``RemoteModel`` maps the model
protocol onto (``search/model/remote.py``).

Requests run on an ``httpx.AsyncClient`` on an asyncio loop in a daemon thread, so a batched
protocol call fans out as concurrent requests (at most ``max_concurrency`` in flight) while its
caller waits. 429 / 5xx / connection errors are retried with exponential backoff and jitter
(``Retry-After`` is honoured); every request has a timeout; any other failure is one
``RemoteModelError`` line that names the server and what it said.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

import httpx

log = logging.getLogger("treedec.remote")

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
T = TypeVar("T")


class RemoteModelError(Exception):
    """The server refused, failed or does not serve what we need; one line that says what to do."""


class _LoopThread:
    """An asyncio loop in a daemon thread; sync callers submit coroutines and wait for them."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="treedec-remote-lm", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


class HttpTransport:
    """One server's JSON API: ``get`` / ``post`` coroutines with retries, run from sync code by
    ``run`` (one coroutine) and ``gather`` (many at once). ``requests`` and ``retries`` count the
    HTTP requests sent and the retries among them."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        timeout_s: float,
        connect_timeout_s: float,
        max_retries: int,
        backoff_s: float,
        max_backoff_s: float,
        max_concurrency: int,
    ) -> None:
        """The defaults are ``RemoteModel``'s: it passes all of these."""
        self.base_url = base_url.rstrip("/")
        self.timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self.max_retries, self.backoff_s, self.max_backoff_s = max_retries, backoff_s, max_backoff_s
        self.max_concurrency = max_concurrency
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._loop = _LoopThread()
        self._client: httpx.AsyncClient | None = None
        self._sem: asyncio.Semaphore | None = None
        self.requests = 0
        self.retries = 0

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self._loop.run(coro, timeout)

    def gather(self, coros: list[Awaitable[T]]) -> list[T]:
        async def all_of() -> list[T]:
            return list(await asyncio.gather(*coros))

        return self._loop.run(all_of())

    def close(self) -> None:
        if self._client is not None:
            try:
                self._loop.run(self._client.aclose(), timeout=5)
            except Exception:  # closing must never fail a caller
                log.debug("closing the HTTP client failed", exc_info=True)
            self._client = None
        self._loop.stop()

    async def _http(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        if self._client is None or self._sem is None:
            limits = httpx.Limits(
                max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency
            )
            self._client = httpx.AsyncClient(
                base_url=self.base_url, timeout=self.timeout, limits=limits, headers=self.headers
            )
            self._sem = asyncio.Semaphore(self.max_concurrency)
        return self._client, self._sem

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, body)

    async def get(self, path: str) -> dict[str, Any]:
        return await self.request("GET", path, None)

    async def request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        client, sem = await self._http()
        last = ""
        for attempt in range(self.max_retries + 1):
            delay: float | None = None
            try:
                async with sem:
                    self.requests += 1
                    resp = await client.request(method, path, json=body)
            except httpx.TransportError as e:  # connect / read timeout / reset: worth a retry
                last = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            else:
                if resp.status_code < 400:
                    return self._json(resp, path)
                last = f"{resp.status_code} {_error_message(resp)}"
                if resp.status_code not in RETRY_STATUSES:
                    raise RemoteModelError(f"{self.base_url}{path}: {last}")
                delay = _retry_after(resp)
            if attempt == self.max_retries:
                break
            self.retries += 1
            backoff = min(self.max_backoff_s, self.backoff_s * 2**attempt) * random.uniform(0.5, 1.5)
            await asyncio.sleep(min(self.max_backoff_s, delay) if delay is not None else backoff)
        raise RemoteModelError(f"{self.base_url}{path}: {last} (after {self.max_retries + 1} attempts)")

    def _json(self, resp: httpx.Response, path: str) -> dict[str, Any]:
        try:
            data = resp.json()
        except ValueError as e:
            raise RemoteModelError(f"{self.base_url}{path} answered non-JSON ({resp.status_code})") from e
        if not isinstance(data, dict):
            raise RemoteModelError(f"{self.base_url}{path} answered {type(data).__name__}, not an object")
        return data


def _error_message(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:200].strip() or resp.reason_phrase
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
        if isinstance(err, str):
            return err[:300]
        if data.get("message"):
            return str(data["message"])[:300]
        if data.get("detail"):
            return str(data["detail"])[:300]
    return resp.text[:200]


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
