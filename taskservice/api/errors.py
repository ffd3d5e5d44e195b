"""Maps the service's exceptions to HTTP errors, all in FastAPI's validation shape."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from taskservice.errors import (
    BatchNotFound,
    DatabaseError,
    DatabaseUnavailable,
    IdempotencyKeyReused,
    InvalidTaskRequest,
    MissingScope,
    NotAuthenticated,
    ScheduleNameTaken,
    ScheduleNotFound,
    ScheduleReadOnly,
    TaskAlreadyFinished,
    TaskNotFound,
    TaskNotRetryable,
    UniqueKeyTaken,
)

logger = logging.getLogger(__name__)

# What a 503 tells the client to wait before trying again, in seconds.
RETRY_AFTER_SECONDS = 2


def _problem(status_code: int, loc: list[str], msg: str, kind: str, **ctx: Any) -> JSONResponse:
    """An error body in FastAPI's validation format, so clients parse one shape."""
    detail: dict[str, Any] = {"loc": loc, "msg": msg, "type": kind}
    if ctx:
        detail["ctx"] = ctx
    return JSONResponse(status_code=status_code, content={"detail": [detail]})


def _json_safe(error: dict[str, Any]) -> dict[str, Any]:
    """A validation error that JSON can carry: `input` goes if it holds NaN or the like."""
    encoded: dict[str, Any] = jsonable_encoder(error)
    try:
        json.dumps(encoded, allow_nan=False)
    except ValueError:
        encoded.pop("input", None)
        encoded.pop("ctx", None)
    return encoded


def install_error_handlers(app: FastAPI) -> None:
    """Register one handler per domain error on `app`."""

    @app.exception_handler(RequestValidationError)
    async def invalid_input(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            status_code=422, content={"detail": [_json_safe(e) for e in exc.errors()]}
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI's own errors (unknown route, unparsable body) carry a bare
        # string; give them the same shape as every other error.
        loc = ["body"] if exc.status_code == 400 else []
        response = _problem(exc.status_code, loc, str(exc.detail), "http_error")
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(InvalidTaskRequest)
    async def invalid_request(_: Request, exc: InvalidTaskRequest) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": exc.errors})

    @app.exception_handler(TaskNotFound)
    async def not_found(_: Request, exc: TaskNotFound) -> JSONResponse:
        return _problem(404, ["path", "task_id"], str(exc), "not_found")

    @app.exception_handler(TaskAlreadyFinished)
    async def finished(_: Request, exc: TaskAlreadyFinished) -> JSONResponse:
        return _problem(409, ["path", "task_id"], str(exc), "task_finished", status=exc.status)

    @app.exception_handler(TaskNotRetryable)
    async def not_retryable(_: Request, exc: TaskNotRetryable) -> JSONResponse:
        return _problem(409, ["path", "task_id"], str(exc), "not_retryable", status=exc.status)

    @app.exception_handler(UniqueKeyTaken)
    async def unique_key_taken(_: Request, exc: UniqueKeyTaken) -> JSONResponse:
        return _problem(
            409, ["body", "unique_key"], str(exc), "unique_key_taken", task_id=exc.task_id
        )

    @app.exception_handler(IdempotencyKeyReused)
    async def key_reused(_: Request, exc: IdempotencyKeyReused) -> JSONResponse:
        return _problem(409, ["header", "Idempotency-Key"], str(exc), "idempotency_key_reused")

    async def database_unavailable(_: Request, exc: Exception) -> JSONResponse:
        logger.warning("database unavailable: %s", exc)
        response = _problem(503, [], "the database is unavailable; retry later", "unavailable")
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    async def database_error(_: Request, exc: Exception) -> JSONResponse:
        # The database refused a statement: a bug or a broken deployment, not an
        # outage, so no retry hint; the traceback is for the operator.
        logger.error("database error: %s", exc, exc_info=exc)
        return _problem(500, [], "internal error: the database refused a statement", "internal")

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after this answer, and the server logs the traceback.
        return _problem(500, [], "internal error", "internal")

    @app.exception_handler(NotAuthenticated)
    async def not_authenticated(_: Request, exc: NotAuthenticated) -> JSONResponse:
        response = _problem(401, ["header", "Authorization"], str(exc), "not_authenticated")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(MissingScope)
    async def missing_scope(_: Request, exc: MissingScope) -> JSONResponse:
        return _problem(
            403, ["header", "Authorization"], str(exc), "missing_scope", scope=exc.scope
        )

    @app.exception_handler(ScheduleNotFound)
    async def schedule_not_found(_: Request, exc: ScheduleNotFound) -> JSONResponse:
        return _problem(404, ["path", "schedule_id"], str(exc), "not_found")

    @app.exception_handler(ScheduleReadOnly)
    async def schedule_read_only(_: Request, exc: ScheduleReadOnly) -> JSONResponse:
        return _problem(409, ["path", "schedule_id"], str(exc), "read_only")

    @app.exception_handler(ScheduleNameTaken)
    async def schedule_name_taken(_: Request, exc: ScheduleNameTaken) -> JSONResponse:
        return _problem(409, ["body", "name"], str(exc), "name_taken")

    @app.exception_handler(BatchNotFound)
    async def batch_not_found(_: Request, exc: BatchNotFound) -> JSONResponse:
        return _problem(404, ["path", "batch_id"], str(exc), "not_found")

    # A database that restarts or drops connections: the client may retry.
    app.add_exception_handler(DatabaseUnavailable, database_unavailable)
    app.add_exception_handler(DatabaseError, database_error)
    app.add_exception_handler(Exception, unexpected)
