"""The service layer: submit, read, cancel, retry and list tasks; shared by the API and the CLI."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import asyncpg
import pydantic

from taskservice import database
from taskservice.errors import (
    IdempotencyKeyReused,
    InvalidTaskRequest,
    TaskAlreadyFinished,
    TaskNotFound,
    TaskNotRetryable,
    UniqueKeyTaken,
)
from taskservice.metrics import Metrics
from taskservice.migrate import migration_names
from taskservice.models import (
    Health,
    QueuePublic,
    TaskAttempt,
    TaskCreate,
    TaskFilters,
    TaskPublic,
    TasksPublic,
)
from taskservice.queue import DEFAULT_QUEUE
from taskservice.registry import TaskRegistry, TaskType
from taskservice.retry import OPTIONS_KEY, options_for

# A worker counts as alive while its heartbeat is younger than this.
LIVE_WORKER_SECONDS = 60.0
_QUEUEING_LOCK_INDEX = "procrastinate_jobs_queueing_lock_idx_v1"


def _invalid(loc: list[str | int], msg: str, kind: str, **ctx: Any) -> InvalidTaskRequest:
    error: dict[str, Any] = {"loc": ["body", *loc], "msg": msg, "type": kind}
    if ctx:
        error["ctx"] = ctx
    return InvalidTaskRequest([error])


def task_type_named(registry: TaskRegistry, name: str) -> TaskType:
    """The task type called `name`, or a 422 naming the known ones."""
    task = registry.get(name) if name in registry.names else None
    if task is None:
        raise _invalid(
            ["type"],
            f"unknown task type {name!r}; known types: " + ", ".join(registry.names),
            "unknown_task_type",
            known_types=registry.names,
        )
    return task


def check_params(task: TaskType, params: dict[str, Any]) -> None:
    """Params valid for `task`, or a 422 naming each wrong one."""
    if OPTIONS_KEY in params:
        raise _invalid(
            ["params", OPTIONS_KEY],
            f"{OPTIONS_KEY!r} is reserved; use the top-level fields",
            "reserved_param",
        )
    try:
        task.params_model.model_validate(params)
    except pydantic.ValidationError as exc:
        raise InvalidTaskRequest(
            [
                {"loc": ["body", "params", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in exc.errors(include_url=False)
            ]
        ) from exc


def _check_at_most(field: str, asked: float | None, limit: float | None, task: TaskType) -> None:
    if asked is not None and limit is not None and asked > limit:
        raise _invalid(
            [field], f"at most {limit:g} for task type {task.name!r}", "less_than_equal", le=limit
        )


def _options(task: TaskType, request: TaskCreate) -> dict[str, Any]:
    """The per-job settings the worker reads, checked against the type's limits."""
    policy = task.retry
    _check_at_most("max_attempts", request.max_attempts, policy.max_attempts_limit, task)
    _check_at_most("backoff_seconds", request.backoff_seconds, policy.max_backoff_seconds, task)
    _check_at_most("timeout_seconds", request.timeout_seconds, task.timeout_seconds, task)
    return options_for(
        task,
        max_attempts=request.max_attempts,
        backoff_seconds=request.backoff_seconds,
        timeout_seconds=request.timeout_seconds,
    )


def request_hash(request: TaskCreate) -> str:
    """A fingerprint of a submission, to tell a replay from a different request."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def submit_task(
    *,
    pool: database.Pool,
    registry: TaskRegistry,
    request: TaskCreate,
    idempotency_key: str | None = None,
    idempotency_retention_seconds: float = 86_400.0,
) -> tuple[TaskPublic, bool]:
    """Validate a submission and queue it; return the task and whether it is new.

    With an `idempotency_key` already used for the same request within the
    retention window, the first task comes back instead (new = False). The key
    and the job are written in one transaction: a crash keeps both or neither."""
    task = task_type_named(registry, request.type)
    check_params(task, request.params)
    args = {**request.params, OPTIONS_KEY: _options(task, request)}
    fingerprint = request_hash(request)
    earlier: int | None = None
    try:
        # One connection for the whole transaction: nothing inside may take a
        # second one from the pool, or concurrent requests could starve it.
        async with pool.acquire() as conn, conn.transaction():
            if idempotency_key is not None:
                earlier = await _claim_key(
                    conn, idempotency_key, fingerprint, idempotency_retention_seconds
                )
            if earlier is None:
                job_id = await _defer(conn, request, args)
                if idempotency_key is not None:
                    await database.execute(
                        conn, "set_idempotency_job", key=idempotency_key, job_id=job_id
                    )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != _QUEUEING_LOCK_INDEX or request.unique_key is None:
            raise
        holder = await database.fetchval(
            pool, "find_unique_key_holder", unique_key=request.unique_key
        )
        raise UniqueKeyTaken(request.unique_key, holder) from exc
    if earlier is not None:
        return await get_task(pool=pool, task_id=earlier), False
    return await get_task(pool=pool, task_id=job_id), True


async def _defer(conn: database.Executor, request: TaskCreate, args: dict[str, Any]) -> int:
    job_id: int = await database.fetchval(
        conn,
        "defer_task",
        queue=request.queue or DEFAULT_QUEUE,
        type=request.type,
        priority=request.priority,
        unique_key=request.unique_key,
        args=args,
        run_at=request.run_at,
        delay_seconds=request.delay_seconds,
    )
    return job_id


async def _claim_key(
    conn: database.Executor, key: str, fingerprint: str, retention_seconds: float
) -> int | None:
    """None if the key is ours to use; else the id of the task it already made."""
    claimed = await database.fetchval(
        conn,
        "claim_idempotency_key",
        key=key,
        request_hash=fingerprint,
        retention_seconds=retention_seconds,
    )
    if claimed is not None:
        return None
    row = await database.fetchrow(conn, "get_idempotency_key", key=key)
    if row is None or row["job_id"] is None:  # its task was deleted meanwhile
        return None
    if row["request_hash"] != fingerprint:
        raise IdempotencyKeyReused(key)
    job_id: int = row["job_id"]
    return job_id


async def get_task(*, pool: database.Pool, task_id: int, with_history: bool = False) -> TaskPublic:
    """One task by id (with every attempt if asked), or TaskNotFound."""
    row = await database.fetchrow(pool, "get_task", task_id=task_id)
    if row is None:
        raise TaskNotFound(task_id)
    task = TaskPublic.model_validate(dict(row))
    if with_history:
        attempts = await database.fetch(pool, "get_task_attempts", task_id=task_id)
        task.attempt_history = [TaskAttempt.model_validate(dict(a)) for a in attempts]
    return task


async def cancel_task(*, pool: database.Pool, task_id: int) -> TaskPublic:
    """Cancel a pending task, or ask a running one to abort.

    Returns the task: `cancelled` at once if it was pending, still `in_progress`
    (with `abort_requested`) if a worker is running it."""
    cancelled = await database.fetchval(pool, "cancel_task", task_id=task_id)
    task = await get_task(pool=pool, task_id=task_id)
    if cancelled is None:
        raise TaskAlreadyFinished(task_id, task.status.value)
    return task


async def retry_task(*, pool: database.Pool, task_id: int) -> TaskPublic:
    """Run a failed or cancelled task again, as a new attempt of the same task."""
    async with pool.acquire() as conn, conn.transaction():
        row = await database.fetchrow(conn, "retry_task", task_id=task_id)
        if row is not None:
            await database.execute(conn, "notify_queue", queue=row["queue_name"], task_id=task_id)
    task = await get_task(pool=pool, task_id=task_id)
    if row is None:
        raise TaskNotRetryable(task_id, task.status.value)
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


async def list_queues(*, pool: database.Pool) -> list[QueuePublic]:
    """Every queue with tasks, with counts per status and its oldest pending wait."""
    return [
        QueuePublic.model_validate(dict(row)) for row in await database.fetch(pool, "list_queues")
    ]


async def check_health(*, pool: database.Pool) -> Health:
    """Whether the database answers, the schema is current and workers are alive."""
    try:
        applied = {row["name"] for row in await database.fetch(pool, "applied_migrations")}
        workers = await database.fetchval(
            pool, "count_live_workers", within_seconds=LIVE_WORKER_SECONDS
        )
    except (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
        OSError,
        TimeoutError,
    ):
        # Any failure here means "not ready": the probe must answer, not raise.
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
        workers=int(workers or 0),
    )


async def read_queue_depth(*, pool: database.Pool, metrics: Metrics) -> None:
    """Set the queue gauges from PostgreSQL (one indexed query per scrape)."""
    rows = await database.fetch(pool, "queue_depth")
    metrics.queue_tasks.clear()
    metrics.queue_oldest_pending.clear()
    for row in rows:
        metrics.queue_tasks.labels(row["queue"], row["status"]).set(row["tasks"])
        if row["oldest_due_seconds"] is not None:
            metrics.queue_oldest_pending.labels(row["queue"]).set(row["oldest_due_seconds"])
