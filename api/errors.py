"""Error responses of the REST API, in the OpenAI error shape so every client can read them.

``{"error": {"message": ..., "type": ..., "param": <the field>, "code": ...}}``. A user's mistake
is a 4xx whose ``param`` and message name the field; an internal error is a 500 with an ``id``
that is also in the server log (with the traceback).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("treedec.server")


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


def error_body(
    message: str, type_: str, param: str | None = None, code: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code, **extra}}


def field_path(loc: Sequence[Any], prefix: str = "") -> str:
    """``("body", "budget", "max_tokens")`` -> ``"budget.max_tokens"``; union branch names dropped."""
    parts = [str(p) for p in loc if p != "body"]
    # pydantic names union branches in the location ("tagged-union[...]", "str", "FunctionTest"): drop them
    parts = [p for p in parts if not ("[" in p or p[:1].isupper() or p in ("str", "int", "function", "io"))]
    return ".".join(([prefix] if prefix else []) + parts)


def validation_error(e: ValidationError | RequestValidationError, prefix: str = "") -> APIError:
    """The first problem of a pydantic error as a 422 (a malformed body as a 400)."""
    errors = e.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": "value_error"}
    if first.get("type") == "json_invalid":
        return APIError(400, f"malformed JSON body: {first.get('msg')}", "body")
    where = field_path(first.get("loc", ()), prefix) or "body"
    message = str(first.get("msg", "invalid value"))
    if first.get("type") == "missing":
        message = "field required"
    elif first.get("type") == "extra_forbidden":
        message = "unknown field"
    return APIError(422, f"invalid value for '{where}': {message}", where)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, exc.type, exc.param), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = validation_error(exc)
        return JSONResponse(error_body(err.message, err.type, err.param), err.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(str(exc.detail), "invalid_request_error"),
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        return internal_error(exc, request.url.path)


def internal_error(exc: BaseException, where: str) -> JSONResponse:
    error_id = uuid.uuid4().hex[:12]
    log.error("internal error %s on %s", error_id, where, exc_info=exc)
    return JSONResponse(
        error_body(
            f"internal error (id {error_id}); the server log has the details", "internal_error", id=error_id
        ),
        500,
    )


async def read_json(request: Request) -> Any:
    """The request body as JSON, or a 400 that says it is malformed."""
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise APIError(400, f"malformed JSON body: {e}", "body") from e
