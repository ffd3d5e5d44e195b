"""The one Procrastinate periodic job that defers every schedule's due runs."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any

import procrastinate
from procrastinate import JobContext
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from taskservice.outcomes import execute
from taskservice.queries import query
from taskservice.registry import INTERNAL_QUEUE, PeriodicSchedule, TaskRegistry
from taskservice.retry import OPTIONS_KEY, options_for
from taskservice.timing import Timing, due_runs

logger = logging.getLogger(__name__)

DISPATCH_TASK = "taskservice.dispatch_schedules"
_BATCH = 100


async def _rows(conn: AsyncConnection[Any], name: str, /, **params: Any) -> list[dict[str, Any]]:
    q = query(name)
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(q.psycopg_text, q.psycopg_params(params))
        return await cursor.fetchall() if cursor.description else []


def job_args(registry: TaskRegistry, type_name: str, params: dict[str, Any]) -> dict[str, Any]:
    """A scheduled run's job args: its params and the type's default options."""
    task = registry.get(type_name)
    # A type gone from the code: the worker will fail the run as TaskNotFound.
    options = options_for(task) if task is not None else {}
    return {**params, OPTIONS_KEY: options}


# Runs a named query and returns its rows, on whichever driver the caller has
# (psycopg in workers, asyncpg in the API), inside the caller's transaction.
Rows = Callable[..., Awaitable[Sequence[Mapping[str, Any]]]]


async def defer_run(
    rows: Rows,
    registry: TaskRegistry,
    schedule: Mapping[str, Any],
    due_at: dt.datetime,
) -> int | None:
    """Defer the run of `schedule` due at `due_at`, unless it already was: the
    (schedule, due time) key makes concurrent dispatchers agree."""
    if not await rows("claim_schedule_run", schedule_id=schedule["id"], due_at=due_at):
        return None
    [row] = await rows(
        "defer_task",
        queue=schedule["queue"],
        type=schedule["type"],
        priority=schedule["priority"],
        unique_key=None,
        args=job_args(registry, schedule["type"], schedule["params"]),
        run_at=None,
        delay_seconds=None,
    )
    job_id: int = row["id"]
    await rows("set_schedule_run_job", schedule_id=schedule["id"], due_at=due_at, job_id=job_id)
    return job_id


async def dispatch_due(connector: procrastinate.PsycopgConnector, registry: TaskRegistry) -> int:
    """Defer every due run of every enabled schedule, in one transaction; return how many."""
    deferred = 0
    async with connector.pool.connection() as conn, conn.transaction():
        [clock] = await _rows(conn, "database_now")
        now: dt.datetime = clock["now"]
        for schedule in await _rows(conn, "lock_due_schedules", limit=_BATCH):
            timing = Timing(
                cron=schedule["cron"],
                interval_seconds=schedule["interval_seconds"],
                timezone=schedule["timezone"],
            )
            runs, next_run_at = due_runs(timing, schedule["next_run_at"], now, schedule["catch_up"])
            for due_at in runs:
                if await defer_run(partial(_rows, conn), registry, schedule, due_at) is not None:
                    deferred += 1
            await _rows(
                conn,
                "advance_schedule",
                schedule_id=schedule["id"],
                next_run_at=next_run_at,
                last_run_at=runs[-1] if runs else None,
            )
    return deferred


def code_schedule_params(schedule: PeriodicSchedule, now: dt.datetime) -> dict[str, Any]:
    """The sync_code_schedule query's parameters for a schedule declared in code."""
    return {
        "name": schedule.name,
        "type": schedule.type,
        "params": schedule.params,
        "cron": schedule.cron,
        "interval_seconds": schedule.interval_seconds,
        "timezone": schedule.timezone,
        "priority": schedule.priority,
        "queue": schedule.queue,
        "catch_up": schedule.catch_up,
        "next_run_at": schedule.timing.first_after(now),
    }


def register_dispatcher(
    app: procrastinate.App, registry: TaskRegistry, code_schedules: list[PeriodicSchedule]
) -> None:
    """Add the dispatcher to `app`: every second, due runs are deferred. On its
    first run in a process it syncs the schedules declared in code."""
    synced = False

    @app.periodic(cron="* * * * * *", periodic_id="dispatch")
    @app.task(
        name=DISPATCH_TASK, queue=INTERNAL_QUEUE, queueing_lock=DISPATCH_TASK, pass_context=True
    )
    async def dispatch_schedules(context: JobContext, timestamp: int) -> dict[str, int]:
        nonlocal synced
        connector = context.app.connector
        assert isinstance(connector, procrastinate.PsycopgConnector)
        if not synced:
            now = dt.datetime.now(dt.UTC)
            for schedule in code_schedules:
                await execute(
                    connector, "sync_code_schedule", **code_schedule_params(schedule, now)
                )
            synced = True
        deferred = await dispatch_due(connector, registry)
        await execute(
            connector, "prune_internal_jobs", task_name=DISPATCH_TASK, before_id=context.job.id
        )
        return {"deferred": deferred}
