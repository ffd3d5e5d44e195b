"""The built-in clean-up: prunes finished tasks (and all that hangs off them) past the retention."""

from __future__ import annotations

from typing import Any

from procrastinate import JobContext
from pydantic import BaseModel, ConfigDict, Field

from taskservice.registry import RetryPolicy, TaskType
from taskservice.services.schedules import CLEANUP_TASK
from taskservice.store import psycopg_driver as pg


class CleanupParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    older_than_days: float = Field(default=7, gt=0, description="Retention of finished tasks.")
    idempotency_key_days: float = Field(default=1, gt=0, description="Retention of keys.")
    batch_size: int = Field(default=1000, ge=1, le=100_000)


async def _delete_in_batches(context: JobContext, name: str, **params: Any) -> int:
    total = 0
    while True:
        # One short transaction per batch: no long locks on the queue's table.
        row = await pg.fetchrow(context.app.connector, name, **params)
        deleted = int(row["deleted"]) if row else 0
        total += deleted
        if deleted < params["batch_size"]:
            return total


async def cleanup(params: CleanupParams, context: JobContext) -> dict[str, int]:
    """Delete finished tasks older than the retention, with their events, results,
    attempts and idempotency keys; schedule-run records as old; batches left
    without tasks; and expired idempotency keys."""
    seconds = params.older_than_days * 86_400
    tasks = await _delete_in_batches(
        context, "prune_finished_jobs", older_than_seconds=seconds, batch_size=params.batch_size
    )
    keys = await _delete_in_batches(
        context,
        "prune_idempotency_keys",
        older_than_seconds=params.idempotency_key_days * 86_400,
        batch_size=params.batch_size,
    )
    runs = await _delete_in_batches(
        context, "prune_schedule_runs", older_than_seconds=seconds, batch_size=params.batch_size
    )
    batches = await _delete_in_batches(
        context, "prune_batches", older_than_seconds=seconds, batch_size=params.batch_size
    )
    return {
        "deleted_tasks": tasks,
        "deleted_idempotency_keys": keys,
        "deleted_schedule_runs": runs,
        "deleted_batches": batches,
    }


# Built directly, not with @task_type: the `taskservice.` prefix is reserved for these.
cleanup_task = TaskType(
    name=CLEANUP_TASK,
    params_model=CleanupParams,
    func=cleanup,
    retry=RetryPolicy(max_attempts=3, backoff_seconds=60),
    description="Prune finished tasks past the retention.",
)
