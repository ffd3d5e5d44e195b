"""Recent activity for the dashboard: workers and their heartbeats, tasks ended per minute."""

from __future__ import annotations

from taskservice.models.activity import ThroughputMinute, ThroughputPublic, WorkerPublic
from taskservice.store import asyncpg_driver as db


async def list_workers(*, pool: db.Pool, live_within_seconds: float) -> list[WorkerPublic]:
    """Every registered worker with its heartbeat's age and its running tasks (one
    query); alive while its heartbeat is younger than `live_within_seconds`."""
    return [
        WorkerPublic(
            id=row["id"],
            last_heartbeat=row["last_heartbeat"],
            heartbeat_age_seconds=row["heartbeat_age_seconds"],
            alive=row["heartbeat_age_seconds"] < live_within_seconds,
            running=row["running"],
            hostname=row["hostname"],
            pid=row["pid"],
            queues=row["queues"],
            concurrency=row["concurrency"],
        )
        for row in await db.fetch(pool, "list_workers")
    ]


async def task_throughput(*, pool: db.Pool, minutes: int) -> ThroughputPublic:
    """Tasks completed and failed in each of the last `minutes` minutes (one query)."""
    rows = await db.fetch(pool, "task_throughput", minutes=minutes)
    return ThroughputPublic(minutes=[ThroughputMinute.model_validate(dict(r)) for r in rows])
