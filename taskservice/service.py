"""The service layer: submit, read, cancel and list tasks; shared by the API and the CLI."""

from __future__ import annotations

from typing import Any

import procrastinate
import pydantic
from asyncpg import InterfaceError, PostgresError
from procrastinate.types import JSONValue

from taskservice import database
from taskservice.errors import InvalidTaskRequest, TaskAlreadyFinished, TaskNotFound
from taskservice.migrate import migration_names
from taskservice.models import (
    Health,
    TaskCreate,
    TaskFilters,
    TaskPublic,
    TasksPublic,
)
from taskservice.queue import DEFAULT_QUEUE
from taskservice.registry import TaskRegistry
from taskservice.retry import OPTIONS_KEY

# A worker counts as alive while its heartbeat is younger than this.
LIVE_WORKER_SECONDS = 60.0


def _validate_submission(registry: TaskRegistry, request: TaskCreate) -> dict[str, Any]:
    """The params as the task type's model accepts them, or InvalidTaskRequest."""
    task = registry.get(request.type)
    if task is None:
        raise InvalidTaskRequest(
            [
                {
                    "loc": ["body", "type"],
                    "msg": f"unknown task type {request.type!r}; known types: "
                    + ", ".join(registry.names),
                    "type": "unknown_task_type",
                    "input": request.type,
                    "ctx": {"known_types": registry.names},
                }
            ]
        )
    if OPTIONS_KEY in request.params:
        raise InvalidTaskRequest(
            [
                {
                    "loc": ["body", "params", OPTIONS_KEY],
                    "msg": f"{OPTIONS_KEY!r} is reserved; use the top-level fields",
                    "type": "reserved_param",
                }
            ]
        )
    try:
        task.params_model.model_validate(request.params)
    except pydantic.ValidationError as exc:
        raise InvalidTaskRequest(
            [
                {
                    "loc": ["body", "params", *error["loc"]],
                    "msg": error["msg"],
                    "type": error["type"],
                }
                for error in exc.errors(include_url=False)
            ]
        ) from exc
    # Store what the client sent, not the model's dump: the worker validates
    # again, and defaults may change between deployments.
    return dict(request.params)


async def submit_task(
    *,
    pool: database.Pool,
    queue_app: procrastinate.App,
    registry: TaskRegistry,
    request: TaskCreate,
) -> TaskPublic:
    """Validate a submission, defer it to Procrastinate and return the stored task."""
    args = _validate_submission(registry, request)
    options: JSONValue = {
        "max_attempts": request.max_attempts or registry[request.type].retry.max_attempts
    }
    job_id = await queue_app.configure_task(
        request.type,
        allow_unknown=False,
        priority=request.priority,
        queue=request.queue or DEFAULT_QUEUE,
        schedule_at=request.run_at,
    ).defer_async(**args, **{OPTIONS_KEY: options})
    return await get_task(pool=pool, task_id=job_id)


async def get_task(*, pool: database.Pool, task_id: int) -> TaskPublic:
    """One task by id, or TaskNotFound."""
    row = await database.fetchrow(pool, "get_task", task_id=task_id)
    if row is None:
        raise TaskNotFound(task_id)
    return TaskPublic.model_validate(dict(row))


async def cancel_task(*, pool: database.Pool, task_id: int) -> TaskPublic:
    """Cancel a pending task, or ask a running one to abort.

    Returns the task: `cancelled` at once if it was pending, still `in_progress`
    (with `abort_requested`) if a worker is running it."""
    cancelled = await database.fetchrow(pool, "cancel_task", task_id=task_id)
    task = await get_task(pool=pool, task_id=task_id)
    if cancelled is None or cancelled["id"] is None:
        raise TaskAlreadyFinished(task_id, task.status.value)
    return task


async def list_tasks(*, pool: database.Pool, filters: TaskFilters) -> TasksPublic:
    """One page of tasks, newest first, by keyset on id."""
    rows = await database.fetch(
        pool,
        "list_tasks",
        status=filters.status.value if filters.status else None,
        type=filters.type,
        queue=filters.queue,
        created_after=filters.created_after,
        created_before=filters.created_before,
        before_id=int(filters.cursor) if filters.cursor else None,
        limit=filters.limit + 1,
    )
    items = [TaskPublic.model_validate(dict(row)) for row in rows[: filters.limit]]
    next_cursor = str(items[-1].id) if len(rows) > filters.limit else None
    return TasksPublic(items=items, next_cursor=next_cursor)


async def check_health(*, pool: database.Pool) -> Health:
    """Whether the database answers, the schema is current and workers are alive."""
    try:
        applied = {row["name"] for row in await database.fetch(pool, "applied_migrations")}
        workers = await database.fetchrow(
            pool, "count_live_workers", within_seconds=LIVE_WORKER_SECONDS
        )
    except (PostgresError, InterfaceError, OSError, TimeoutError):
        return Health(
            status="unavailable",
            database=False,
            schema_current=False,
            missing_migrations=[],
            workers=0,
        )
    missing = [name for name in migration_names() if name not in applied]
    return Health(
        status="ok" if not missing else "unavailable",
        database=True,
        schema_current=not missing,
        missing_migrations=missing,
        workers=int(workers["workers"]) if workers else 0,
    )
