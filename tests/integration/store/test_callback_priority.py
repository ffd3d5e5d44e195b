"""Webhook deliveries are the service's own jobs: deferred by the status trigger
at the internal priority, ahead of every client's task."""

from __future__ import annotations

import asyncpg

from taskservice.registry import INTERNAL_PRIORITY


async def _defer(db: asyncpg.Connection, args: str) -> int:
    job_id: int = await db.fetchval(
        "SELECT (procrastinate_defer_jobs_v1(ARRAY[ROW('default', 'echo', 5, NULL, NULL,"
        " CAST($1 AS jsonb), NULL)::procrastinate_job_to_defer_v1]))[1]",
        args,
    )
    return job_id


async def test_task_and_batch_callbacks_are_deferred_at_the_internal_priority(
    db: asyncpg.Connection,
) -> None:
    batch_id = await db.fetchval(
        "INSERT INTO taskservice.batches (total, callback_url) VALUES (1, 'http://x/b')"
        " RETURNING id"
    )
    job_id = await _defer(
        db,
        f'{{"value": 1, "_options": {{"callback_url": "http://x/t", "batch_id": {batch_id}}}}}',
    )
    await db.execute("UPDATE procrastinate_jobs SET status = 'succeeded' WHERE id = $1", job_id)
    deliveries = await db.fetch(
        "SELECT priority, queue_name, args FROM procrastinate_jobs"
        " WHERE task_name = 'taskservice.deliver_callback' ORDER BY id"
    )
    assert [(d["priority"], d["queue_name"]) for d in deliveries] == [
        (INTERNAL_PRIORITY, "taskservice"),
        (INTERNAL_PRIORITY, "taskservice"),
    ]
