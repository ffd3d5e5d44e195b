"""The HTTP API: `create_app(settings)` builds it; routes call the service layer."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, FastAPI, Header, Path, Query, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from taskservice import database, service
from taskservice.errors import (
    IdempotencyKeyReused,
    InvalidTaskRequest,
    TaskAlreadyFinished,
    TaskNotFound,
    TaskNotRetryable,
    UniqueKeyTaken,
)
from taskservice.migrate import migrate
from taskservice.models import (
    PG_BIGINT_MAX,
    Health,
    QueuePublic,
    TaskCreate,
    TaskFilters,
    TaskPublic,
    TasksPublic,
    TaskStatus,
)
from taskservice.registry import TaskRegistry, load_registry
from taskservice.settings import Settings

logger = logging.getLogger(__name__)


def _pool(request: Request) -> database.Pool:
    pool: database.Pool = request.app.state.pool
    return pool


def _registry(request: Request) -> TaskRegistry:
    registry: TaskRegistry = request.app.state.registry
    return registry


PoolDep = Annotated[database.Pool, Depends(_pool)]
RegistryDep = Annotated[TaskRegistry, Depends(_registry)]
TaskId = Annotated[int, Path(ge=1, le=PG_BIGINT_MAX, description="The task's id.")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Repeat a submission safely: the same key and body give back the first task.",
    ),
]


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


def _install_error_handlers(app: FastAPI) -> None:
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
        return _problem(503, [], "the database is unavailable; retry later", "unavailable")

    for exc_type in (OSError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError):
        app.add_exception_handler(exc_type, database_unavailable)


def create_app(settings: Settings, *, registry: TaskRegistry | None = None) -> FastAPI:
    """The API on `settings.database_url` (resolved: see database.resolve_database_url)."""
    if settings.database_url is None:
        raise ValueError("create_app needs settings with a database_url")
    database_url = settings.database_url
    task_registry = registry or load_registry(settings.task_modules)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await migrate(database_url)
        pool = await database.create_pool(database_url, max_size=settings.api_pool_size)
        try:
            app.state.pool = pool
            app.state.registry = task_registry
            yield
        finally:
            await pool.close()

    app = FastAPI(
        title="taskservice",
        summary="Background tasks over REST, queued in PostgreSQL by Procrastinate.",
        lifespan=lifespan,
    )
    _install_error_handlers(app)

    @app.post(
        "/tasks",
        status_code=status.HTTP_201_CREATED,
        response_model=TaskPublic,
        responses={200: {"model": TaskPublic, "description": "Idempotent replay"}, 409: {}},
    )
    async def submit(
        body: TaskCreate,
        response: Response,
        pool: PoolDep,
        reg: RegistryDep,
        idempotency_key: IdempotencyKey = None,
    ) -> TaskPublic:
        """Submit a task; its params are checked against its type before it is stored."""
        task, created = await service.submit_task(
            pool=pool,
            registry=reg,
            request=body,
            idempotency_key=idempotency_key,
            idempotency_retention_seconds=settings.idempotency_retention_seconds,
        )
        response.headers["Location"] = f"/tasks/{task.id}"
        if not created:
            response.status_code = status.HTTP_200_OK
            response.headers["Idempotent-Replayed"] = "true"
        return task

    @app.get("/tasks", response_model=TasksPublic)
    async def list_tasks(filters: Annotated[TaskFilters, Query()], pool: PoolDep) -> TasksPublic:
        """Tasks newest first, filtered; follow `next_cursor` for the next page."""
        return await service.list_tasks(pool=pool, filters=filters)

    @app.get("/tasks/{task_id}", response_model=TaskPublic, responses={404: {}})
    async def get_task(task_id: TaskId, pool: PoolDep) -> TaskPublic:
        """One task with its status, result, error and every attempt."""
        return await service.get_task(pool=pool, task_id=task_id, with_history=True)

    @app.delete(
        "/tasks/{task_id}",
        response_model=TaskPublic,
        responses={202: {"model": TaskPublic}, 404: {}, 409: {}},
    )
    async def cancel(task_id: TaskId, response: Response, pool: PoolDep) -> TaskPublic:
        """Cancel a pending task (200), or ask a running one to stop (202)."""
        task = await service.cancel_task(pool=pool, task_id=task_id)
        if task.status is not TaskStatus.CANCELLED:
            response.status_code = status.HTTP_202_ACCEPTED
        return task

    @app.post("/tasks/{task_id}/retry", response_model=TaskPublic, responses={404: {}, 409: {}})
    async def retry(task_id: TaskId, pool: PoolDep) -> TaskPublic:
        """Run a failed or cancelled task again: a new attempt of the same task."""
        return await service.retry_task(pool=pool, task_id=task_id)

    @app.get("/queues", response_model=list[QueuePublic])
    async def queues(pool: PoolDep) -> list[QueuePublic]:
        """Every queue with its tasks per status and the wait of its oldest due task."""
        return await service.list_queues(pool=pool)

    @app.get("/task-types")
    async def task_types(reg: RegistryDep) -> dict[str, Any]:
        """The task types this deployment runs, with the JSON schema of their params."""
        return {
            name: {
                "description": reg[name].description,
                "params": reg[name].params_model.model_json_schema(),
                "max_attempts": reg[name].retry.max_attempts,
                "max_attempts_limit": reg[name].retry.max_attempts_limit,
                "timeout_seconds": reg[name].timeout_seconds,
            }
            for name in reg.names
        }

    @app.get("/health", response_model=Health, responses={503: {"model": Health}})
    async def health(response: Response, pool: PoolDep) -> Health:
        """Database reachable, schema current, and how many workers are alive."""
        result = await service.check_health(pool=pool)
        if result.status != "ok":
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return result

    return app
