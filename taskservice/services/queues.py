"""Queues: what waits and runs in each, for the API and the metrics scrape."""

from __future__ import annotations

from taskservice.metrics import Metrics
from taskservice.models.tasks import QueuePublic
from taskservice.store import asyncpg_driver as db


async def list_queues(*, pool: db.Pool) -> list[QueuePublic]:
    """Every queue with tasks, with counts per status and its oldest pending wait."""
    return [QueuePublic.model_validate(dict(row)) for row in await db.fetch(pool, "list_queues")]


async def read_queue_depth(*, pool: db.Pool, metrics: Metrics) -> None:
    """Set the queue gauges from PostgreSQL (one indexed query per scrape)."""
    rows = await db.fetch(pool, "queue_depth")
    metrics.queue_tasks.clear()
    metrics.queue_oldest_pending.clear()
    for row in rows:
        metrics.queue_tasks.labels(row["queue"], row["status"]).set(row["tasks"])
        if row["oldest_due_seconds"] is not None:
            metrics.queue_oldest_pending.labels(row["queue"]).set(row["oldest_due_seconds"])
