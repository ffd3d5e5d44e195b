"""Writes shared by the API and the dispatcher: a schedule's run, a code-declared schedule."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from taskservice.job_options import OPTIONS_KEY, options_for
from taskservice.registry import PeriodicSchedule, TaskRegistry


def job_args(
    registry: TaskRegistry,
    type_name: str,
    params: dict[str, Any],
    owner: int | None = None,
    callback_url: str | None = None,
) -> dict[str, Any]:
    """A scheduled run's job args: its params, the type's default options, the
    schedule creator's key and its callback (checked when the schedule was saved)."""
    task = registry.get(type_name)
    # A type gone from the code: the worker will fail the run as TaskNotFound.
    options = options_for(task, owner=owner) if task is not None else {}
    if callback_url is not None:
        options["callback_url"] = callback_url
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
        args=job_args(
            registry,
            schedule["type"],
            schedule["params"],
            schedule.get("owner_key_id"),
            schedule.get("callback_url"),
        ),
        run_at=None,
        delay_seconds=None,
    )
    job_id: int = row["id"]
    await rows("set_schedule_run_job", schedule_id=schedule["id"], due_at=due_at, job_id=job_id)
    return job_id


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
