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
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from api.core.errors import APIError  # the routes raise it from here; it lives in core for the job backends

log = logging.getLogger("treedec.server")


class ErrorDetail(BaseModel):
    """What went wrong; an internal error also has its ``id`` (in the server log)."""

    model_config = ConfigDict(extra="allow")
    message: str = Field(description="one line that names the offending field")
    type: str = Field(description="invalid_request_error, rate_limit_error, timeout_error or internal_error")
    param: str | None = Field(description="the offending field as a dotted path, if one is to blame")
    code: str | None = Field(description="always null (kept for OpenAI clients)")


class ErrorResponse(BaseModel):
    """Every error of the API, in the OpenAI error shape."""

    error: ErrorDetail


ERROR_DESCRIPTIONS = {
    400: "malformed JSON body, unknown planner, or an option the server does not support",
    404: "no such job or model",
    405: "method not allowed (the Allow header lists the allowed ones)",
    409: "the job has no tree (yet)",
    413: "prompt or tests larger than this server accepts",
    422: "a field is invalid; `param` names it",
    429: "the queue is full; retry after Retry-After seconds",
    500: "internal error (its id is in the server log)",
    504: "the search did not finish within the server's time cap",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that can fail with these statuses (the shared error model)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        spec: dict[str, Any] = {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS[status]}
        if status == 429:
            spec["headers"] = {
                "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer", "minimum": 1}}
            }
        out[status] = spec
    return out


def error_body(
    message: str, type_: str, param: str | None = None, code: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code, **extra}}


def field_path(loc: Sequence[Any], prefix: str = "") -> str:
    """``("body", "budget", "max_tokens")`` -> ``"budget.max_tokens"``; union branch names dropped."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
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
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ").splitlines()[0]
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
        headers = dict(getattr(exc, "headers", None) or {})
        message = str(exc.detail)
        if exc.status_code == 405:
            # Starlette names only the methods of the first route on the path; list them all
            allowed = allowed_methods(app, request)
            headers["Allow"] = ", ".join(allowed)
            path = request.url.path
            message = f"method {request.method} is not allowed on {path}; use {', '.join(allowed)}"
        return JSONResponse(error_body(message, "invalid_request_error"), exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        return internal_error(exc, request.url.path)


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """Every method some route accepts on the request's path."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        route_methods = getattr(route, "methods", None)
        if match != Match.NONE and route_methods:
            methods |= set(route_methods)
    return sorted(methods)


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
