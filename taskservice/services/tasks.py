"""Tasks: submit, read, cancel, retry and list; shared by the API and the CLI."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import pydantic

from taskservice.errors import (
    IdempotencyKeyReused,
    InvalidTaskRequest,
    TaskAlreadyFinished,
    TaskNotFound,
    TaskNotRetryable,
    UniqueKeyTaken,
    UniqueViolation,
)
from taskservice.job_options import OPTIONS_KEY, options_for
from taskservice.models.tasks import (
    PROCRASTINATE_STATUSES,
    TaskCreate,
    TaskFilters,
    TaskPublic,
    TasksPublic,
)
from taskservice.registry import TaskRegistry, TaskType
from taskservice.services.rules import SubmitRules
from taskservice.services.submissions import GroupSubmitter, insert_tasks, job_of
from taskservice.store import asyncpg_driver as db

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


def check_params(task: TaskType, params: dict[str, Any]) -> pydantic.BaseModel:
    """Params valid for `task` (validated), or a 422 naming each wrong one.
    The type's own check of the deployment's rules is SubmitRules.check_params."""
    if OPTIONS_KEY in params:
        raise _invalid(
            ["params", OPTIONS_KEY],
            f"{OPTIONS_KEY!r} is reserved; use the top-level fields",
            "reserved_param",
        )
    try:
        # Strict, as JSON: what the type's JSON schema says (no false for a
        # number, no "5" for an integer), not what Python coercion would make of it.
        return task.params_model.model_validate_json(json.dumps(params), strict=True)
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


def _options(task: TaskType, request: TaskCreate, owner: int | None) -> dict[str, Any]:
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
        owner=owner,
    )


def request_hash(request: TaskCreate) -> str:
    """A fingerprint of a submission, to tell a replay from a different request."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def job_args(
    registry: TaskRegistry,
    request: TaskCreate,
    rules: SubmitRules | None = None,
    owner: int | None = None,
) -> dict[str, Any]:
    """A submission's job args (params and options), or a 422 naming what is wrong."""
    task = task_type_named(registry, request.type)
    rules = rules or SubmitRules()
    await rules.check_params(task, check_params(task, request.params))
    options = _options(task, request, owner)
    if request.callback_url is not None:
        await rules.check(request.callback_url)
        options["callback_url"] = request.callback_url
    return {**request.params, OPTIONS_KEY: options}


async def submit_task(
    *,
    pool: db.Pool,
    registry: TaskRegistry,
    request: TaskCreate,
    idempotency_key: str | None = None,
    idempotency_retention_seconds: float = 86_400.0,
    rules: SubmitRules | None = None,
    owner: int | None = None,
    submitter: GroupSubmitter | None = None,
) -> tuple[TaskPublic, bool]:
    """Validate a submission and queue it, as a task of API key `owner` (None:
    no key); return the task and whether it is new.

    With an `idempotency_key` already used for the same request within the
    retention window, the first task comes back instead (new = False). Keys are
    per API key: two clients cannot see or block each other's. The key and the
    job are written in one transaction: a crash keeps both or neither. Without
    one, the task goes through `submitter` if given (grouped with others
    arriving at the same time), else in a statement of its own."""
    job = job_of(request, await job_args(registry, request, rules, owner))
    earlier: int | None = None
    try:
        if idempotency_key is None:
            if submitter is not None:
                return await submitter.submit(job), True
            [task] = await insert_tasks(pool, [job])
            return task, True
        if owner is not None:
            idempotency_key = f"{owner}:{idempotency_key}"
        fingerprint = request_hash(request)
        # One connection for the whole transaction: nothing inside may take a
        # second one from the pool, or concurrent requests could starve it.
        async with db.transaction(pool) as conn:
            earlier = await _claim_key(
                conn, idempotency_key, fingerprint, idempotency_retention_seconds
            )
            if earlier is None:
                [task] = await insert_tasks(conn, [job])
                await db.execute(conn, "set_idempotency_job", key=idempotency_key, job_id=task.id)
    except UniqueViolation as exc:
        if exc.constraint != _QUEUEING_LOCK_INDEX or request.unique_key is None:
            raise
        holder = await db.fetchval(pool, "find_unique_key_holder", unique_key=request.unique_key)
        raise UniqueKeyTaken(request.unique_key, holder) from exc
    if earlier is not None:
        return await get_task(pool=pool, task_id=earlier), False
    return task, True


async def _claim_key(
    conn: db.Executor, key: str, fingerprint: str, retention_seconds: float
) -> int | None:
    """None if the key is ours to use; else the id of the task it already made."""
    claimed = await db.fetchval(
        conn,
        "claim_idempotency_key",
        key=key,
        request_hash=fingerprint,
        retention_seconds=retention_seconds,
    )
    if claimed is not None:
        return None
    row = await db.fetchrow(conn, "get_idempotency_key", key=key)
    if row is None or row["job_id"] is None:  # its task was deleted meanwhile
        return None
    if row["request_hash"] != fingerprint:
        raise IdempotencyKeyReused(key)
    job_id: int = row["job_id"]
    return job_id


async def get_task(
    *, pool: db.Pool, task_id: int, with_history: bool = False, owner: int | None = None
) -> TaskPublic:
    """One task by id (with every attempt if asked), or TaskNotFound; with an
    `owner`, only a task of that API key (another key's task is not found)."""
    if not with_history:
        row = await db.fetchrow(pool, "get_task", task_id=task_id, owner=owner)
        if row is None:
            raise TaskNotFound(task_id)
        return TaskPublic.model_validate(dict(row))
    document = await db.fetchval(pool, "get_task_with_attempts", task_id=task_id, owner=owner)
    if document is None:
        raise TaskNotFound(task_id)
    return TaskPublic.model_validate_json(document)


async def cancel_task(
    *, pool: db.Pool, task_id: int, owner: int | None = None
) -> tuple[TaskPublic, bool]:
    """Cancel a pending task, or ask a running one to abort (with an `owner`,
    only a task of that API key).

    Returns the task as it is now and whether it was running: then its worker
    was asked to stop it, and the task ends `cancelled` once it has (it may
    already have, by the time the task is read)."""
    if owner is not None:
        await get_task(pool=pool, task_id=task_id, owner=owner)
    row = await db.fetchrow(pool, "cancel_task", task_id=task_id)
    task = await get_task(pool=pool, task_id=task_id)
    if row is None or row["id"] is None:
        raise TaskAlreadyFinished(task_id, task.status.value)
    return task, bool(row["running"])


async def retry_task(*, pool: db.Pool, task_id: int, owner: int | None = None) -> TaskPublic:
    """Run a failed or cancelled task again, as a new attempt of the same task
    (with an `owner`, only a task of that API key)."""
    if owner is not None:
        await get_task(pool=pool, task_id=task_id, owner=owner)
    try:
        async with db.transaction(pool) as conn:
            row = await db.fetchrow(conn, "retry_task", task_id=task_id)
            if row is not None:
                await db.execute(conn, "notify_queue", queue=row["queue_name"], task_id=task_id)
    except UniqueViolation as exc:
        # Back to pending, its unique_key clashes with another pending task's.
        if exc.constraint != _QUEUEING_LOCK_INDEX:
            raise
        task = await get_task(pool=pool, task_id=task_id)
        assert task.unique_key is not None
        holder = await db.fetchval(pool, "find_unique_key_holder", unique_key=task.unique_key)
        raise UniqueKeyTaken(task.unique_key, holder) from exc
    task = await get_task(pool=pool, task_id=task_id)
    if row is None:
        raise TaskNotRetryable(task_id, task.status.value)
    return task


async def list_tasks(
    *, pool: db.Pool, filters: TaskFilters, page_bytes: int, owner: int | None = None
) -> TasksPublic:
    """One page of tasks, newest first, by keyset on id (with an `owner`, only
    that API key's). The page ends early when its params, results and errors
    would pass `page_bytes` (as JSON text); it holds at least one task, and
    `next_cursor` goes on from where it ended."""
    rows = await db.fetch(
        pool,
        "list_tasks",
        statuses=list(PROCRASTINATE_STATUSES[filters.status]) if filters.status else None,
        type=filters.type,
        queue=filters.queue,
        created_after=filters.created_after,
        created_before=filters.created_before,
        before_id=int(filters.cursor) if filters.cursor else None,
        limit=filters.limit + 1,
        page_bytes=page_bytes,
        owner=owner,
        batch_id=filters.batch_id,
    )
    return _page(rows, filters.limit)


def _page(rows: Sequence[Any], limit: int) -> TasksPublic:
    """A page from `limit` + 1 rows at most, cut short by the byte budget (the
    `fetched` column counts the rows before that cut)."""
    items = [TaskPublic.model_validate(dict(row)) for row in rows[:limit]]
    fetched = rows[0]["fetched"] if rows else 0
    more = fetched > limit or len(rows) < fetched
    next_cursor = str(items[-1].id) if more else None
    return TasksPublic(items=items, next_cursor=next_cursor)
