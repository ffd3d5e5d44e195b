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
    # Queues past the label bound add up under `other` (the oldest wait: the longest).
    tasks: dict[tuple[str, str], int] = {}
    oldest: dict[str, float] = {}
    for row in rows:
        queue = metrics.queue_label(row["queue"])
        tasks[queue, row["status"]] = tasks.get((queue, row["status"]), 0) + row["tasks"]
        if row["oldest_due_seconds"] is not None:
            oldest[queue] = max(oldest.get(queue, 0.0), float(row["oldest_due_seconds"]))
    metrics.queue_tasks.clear()
    metrics.queue_oldest_pending.clear()
    for (queue, status), count in tasks.items():
        metrics.queue_tasks.labels(queue, status).set(count)
    for queue, seconds in oldest.items():
        metrics.queue_oldest_pending.labels(queue).set(seconds)
