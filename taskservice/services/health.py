"""Readiness: the database answers, its schema is current, the in-process worker works."""

from __future__ import annotations

import asyncio
from typing import Protocol

from taskservice.errors import DatabaseError, DatabaseUnavailable
from taskservice.models.tasks import Health
from taskservice.store import asyncpg_driver as db
from taskservice.store.migrate import missing_migrations

# A readiness probe answers within this, whatever the database does.
HEALTH_TIMEOUT_SECONDS = 3.0


class WorkerProbe(Protocol):
    """The state of a worker running in the same process (`taskservice up`)."""

    def not_ready_reason(self) -> str | None:
        """Why the worker cannot take work now; None when it can."""


async def check_health(
    *,
    pool: db.Pool,
    database_url: str,
    live_within_seconds: float,
    worker: WorkerProbe | None = None,
) -> Health:
    """Whether the service can work: the database answers within
    HEALTH_TIMEOUT_SECONDS, on the pool and on a new connection (a server whose
    every slot is taken serves the pool's old connections but no worker could
    reconnect), the schema is current and, when the API runs with its own worker
    (`worker`), that worker is connected.

    A standalone API does not need a live worker to be ready (it accepts tasks
    that wait for one), so `workers` is reported, not judged: the number of
    workers whose heartbeat is younger than `live_within_seconds`."""
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
            applied = {row["name"] for row in await db.fetch(pool, "applied_migrations")}
            workers = await db.fetchval(
                pool, "count_live_workers", within_seconds=live_within_seconds
            )
            await db.ping_new_connection(database_url)
    except TimeoutError:
        return _unavailable(f"the database did not answer within {HEALTH_TIMEOUT_SECONDS:g} s")
    except (DatabaseUnavailable, DatabaseError) as exc:
        # Any failure here means "not ready": the probe must answer, not raise.
        return _unavailable(f"the database is unavailable: {exc}")
    missing = missing_migrations(applied)
    reason = None
    if missing:
        reason = "the database schema is not current: run `taskservice migrate`"
    elif worker is not None:
        reason = worker.not_ready_reason()
    return Health(
        status="ok" if reason is None else "unavailable",
        database=True,
        schema_current=not missing,
        missing_migrations=missing,
        workers=int(workers or 0),
        reason=reason,
    )


def _unavailable(reason: str) -> Health:
    return Health(
        status="unavailable",
        database=False,
        schema_current=False,
        missing_migrations=[],
        workers=0,
        reason=reason,
    )
