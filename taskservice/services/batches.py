"""Batches: many tasks stored in one statement (all or none), counted and awaited together."""

from __future__ import annotations

from typing import Any

from taskservice.errors import BatchNotFound, InvalidTaskRequest, UniqueKeyTaken, UniqueViolation
from taskservice.job_options import OPTIONS_KEY
from taskservice.models.batches import BatchCreate, BatchCreated, BatchPublic
from taskservice.registry import DEFAULT_QUEUE, TaskRegistry
from taskservice.services.rules import SubmitRules
from taskservice.services.tasks import job_args
from taskservice.store import asyncpg_driver as db


async def submit_batch(
    *,
    pool: db.Pool,
    registry: TaskRegistry,
    request: BatchCreate,
    rules: SubmitRules | None = None,
    owner: int | None = None,
) -> BatchCreated:
    """Check every task, then store the batch and all its tasks in one
    transaction (one insert of the jobs). Any error: nothing is stored, and
    each wrong item is named by its index (`loc: ["body", "tasks", 17, ...]`)."""
    rules = rules or SubmitRules()
    jobs: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(request.tasks):
        try:
            args = await job_args(registry, item, rules, owner)
        except InvalidTaskRequest as exc:
            errors += [_at_item(index, error) for error in exc.errors]
            continue
        jobs.append(
            {
                "queue": item.queue or DEFAULT_QUEUE,
                "type": item.type,
                "priority": item.priority,
                "unique_key": item.unique_key,
                "args": args,
                "run_at": item.run_at.isoformat() if item.run_at else None,
                "delay_seconds": item.delay_seconds,
            }
        )
    if request.callback_url is not None:
        try:
            await rules.check(request.callback_url)
        except InvalidTaskRequest as exc:
            errors += exc.errors
    if errors:
        raise InvalidTaskRequest(errors)
    try:
        async with db.transaction(pool) as conn:
            batch_id: int = await db.fetchval(
                conn,
                "insert_batch",
                total=len(jobs),
                callback_url=request.callback_url,
                owner=owner,
            )
            for job in jobs:
                job["args"][OPTIONS_KEY]["batch_id"] = batch_id
            ids: list[int] = await db.fetchval(conn, "defer_tasks", tasks=jobs)
    except UniqueViolation as exc:
        keys = [item.unique_key for item in request.tasks if item.unique_key is not None]
        if not keys:
            raise
        holder = None
        for key in keys:
            holder = await db.fetchval(pool, "find_unique_key_holder", unique_key=key)
            if holder is not None:
                raise UniqueKeyTaken(key, holder) from exc
        raise UniqueKeyTaken(keys[0], holder) from exc  # two items of the batch share it
    return BatchCreated(batch_id=batch_id, ids=ids)


def _at_item(index: int, error: dict[str, Any]) -> dict[str, Any]:
    loc = list(error["loc"])
    if loc[:1] == ["body"]:
        loc = loc[1:]
    return {**error, "loc": ["body", "tasks", index, *loc]}


async def get_batch(*, pool: db.Pool, batch_id: int, owner: int | None = None) -> BatchPublic:
    """A batch's tasks per status, or BatchNotFound (with an `owner`, only a
    batch of that API key)."""
    row = await db.fetchrow(pool, "get_batch", batch_id=batch_id, owner=owner)
    if row is None:
        raise BatchNotFound(batch_id)
    return BatchPublic.model_validate({**dict(row), "done": row["done_at"] is not None})
