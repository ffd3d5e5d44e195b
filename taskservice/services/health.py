"""Readiness: the database answers, its schema is current, workers are alive."""

from __future__ import annotations

from taskservice.errors import DatabaseError, DatabaseUnavailable
from taskservice.models.tasks import Health
from taskservice.store import asyncpg_driver as db
from taskservice.store.migrate import missing_migrations

# A worker counts as alive while its heartbeat is younger than this.
LIVE_WORKER_SECONDS = 60.0


async def check_health(*, pool: db.Pool) -> Health:
    """Whether the database answers, the schema is current and workers are alive."""
    try:
        applied = {row["name"] for row in await db.fetch(pool, "applied_migrations")}
        workers = await db.fetchval(pool, "count_live_workers", within_seconds=LIVE_WORKER_SECONDS)
    except (DatabaseUnavailable, DatabaseError, TimeoutError):
        # Any failure here means "not ready": the probe must answer, not raise.
        return Health(
            status="unavailable",
            database=False,
            schema_current=False,
            missing_migrations=[],
            workers=0,
        )
    missing = missing_migrations(applied)
    return Health(
        status="ok" if not missing else "unavailable",
        database=True,
        schema_current=not missing,
        missing_migrations=missing,
        workers=int(workers or 0),
    )
