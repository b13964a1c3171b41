"""The error a request is refused with, below every surface that raises it.

``APIError`` carries an HTTP status, a one-line message and the offending field; the job
backends raise it too (``api.jobs.queue_store.QueueUnavailable``). How the server turns it into a
response (the OpenAI error shape, the FastAPI handlers) is ``api/http/errors.py``.
"""

from __future__ import annotations


class APIError(Exception):
    """A request the server refuses; ``param`` is the offending field (dotted path)."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        type_: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.type, self.headers = (
            status,
            message,
            param,
            type_,
            headers,
        )
