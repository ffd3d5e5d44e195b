"""The one Procrastinate periodic job that defers every schedule's due runs."""

from __future__ import annotations

import datetime as dt
import logging
from functools import partial

import procrastinate
from procrastinate import JobContext

from taskservice.registry import INTERNAL_PRIORITY, INTERNAL_QUEUE, PeriodicSchedule, TaskRegistry
from taskservice.store import psycopg_driver as pg
from taskservice.store.schedule_runs import code_schedule_params, defer_run
from taskservice.timing import Timing, due_runs

logger = logging.getLogger(__name__)

DISPATCH_TASK = "taskservice.dispatch_schedules"
_BATCH = 100


async def dispatch_due(connector: procrastinate.PsycopgConnector, registry: TaskRegistry) -> int:
    """Defer every due run of every enabled schedule, in one transaction; return how many."""
    deferred = 0
    async with connector.pool.connection() as conn, conn.transaction():
        [clock] = await pg.fetch(conn, "database_now")
        now: dt.datetime = clock["now"]
        for schedule in await pg.fetch(conn, "lock_due_schedules", limit=_BATCH):
            timing = Timing(
                cron=schedule["cron"],
                interval_seconds=schedule["interval_seconds"],
                timezone=schedule["timezone"],
            )
            runs, next_run_at = due_runs(timing, schedule["next_run_at"], now, schedule["catch_up"])
            for due_at in runs:
                if await defer_run(partial(pg.fetch, conn), registry, schedule, due_at) is not None:
                    deferred += 1
            await pg.fetch(
                conn,
                "advance_schedule",
                schedule_id=schedule["id"],
                next_run_at=next_run_at,
                last_run_at=runs[-1] if runs else None,
            )
    return deferred


def register_dispatcher(
    app: procrastinate.App, registry: TaskRegistry, code_schedules: list[PeriodicSchedule]
) -> None:
    """Add the dispatcher to `app`: every second, due runs are deferred. On its
    first run in a process it syncs the schedules declared in code."""
    synced = False

    @app.periodic(cron="* * * * * *", periodic_id="dispatch")
    @app.task(
        name=DISPATCH_TASK,
        queue=INTERNAL_QUEUE,
        priority=INTERNAL_PRIORITY,
        queueing_lock=DISPATCH_TASK,
        pass_context=True,
    )
    async def dispatch_schedules(context: JobContext, timestamp: int) -> dict[str, int]:
        nonlocal synced
        connector = context.app.connector
        assert isinstance(connector, procrastinate.PsycopgConnector)
        if not synced:
            now = dt.datetime.now(dt.UTC)
            for schedule in code_schedules:
                await pg.execute(
                    connector, "sync_code_schedule", **code_schedule_params(schedule, now)
                )
            synced = True
        deferred = await dispatch_due(connector, registry)
        await pg.execute(
            connector, "prune_internal_jobs", task_name=DISPATCH_TASK, before_id=context.job.id
        )
        return {"deferred": deferred}
