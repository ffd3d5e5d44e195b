"""The scheduler's service layer: schedules created at run time or declared in code."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import asyncpg

from taskservice import database
from taskservice.dispatcher import code_schedule_params, defer_run
from taskservice.errors import (
    InvalidTaskRequest,
    ScheduleNameTaken,
    ScheduleNotFound,
    ScheduleReadOnly,
)
from taskservice.models import TaskPublic
from taskservice.registry import PeriodicSchedule, TaskRegistry
from taskservice.schedule_models import (
    ScheduleCreate,
    ScheduledJobsPublic,
    SchedulePublic,
    ScheduleUpdate,
)
from taskservice.service import check_params, get_task, task_type_named
from taskservice.timing import Timing


async def _now(db: database.Executor) -> dt.datetime:
    now: dt.datetime = await database.fetchval(db, "database_now")
    return now


def _timing(cron: str | None, interval: float | None, timezone: str) -> Timing:
    try:
        return Timing(cron=cron, interval_seconds=interval, timezone=timezone)
    except ValueError as exc:
        raise InvalidTaskRequest(
            [{"loc": ["body", "cron"], "msg": str(exc), "type": "value_error"}]
        ) from exc


async def sync_code_schedules(
    *, pool: database.Pool, schedules: Iterable[PeriodicSchedule]
) -> None:
    """Create or update the schedules declared in code (workers do it too)."""
    now = await _now(pool)
    for schedule in schedules:
        await database.execute(pool, "sync_code_schedule", **code_schedule_params(schedule, now))


async def get_schedule(*, pool: database.Pool, schedule_id: int) -> SchedulePublic:
    """One schedule with its last run and run counts, or ScheduleNotFound."""
    row = await database.fetchrow(pool, "list_schedules", schedule_id=schedule_id)
    if row is None:
        raise ScheduleNotFound(schedule_id)
    return SchedulePublic.model_validate(dict(row))


async def list_schedules(
    *, pool: database.Pool, include_one_off: bool = False, one_off_limit: int = 500
) -> ScheduledJobsPublic:
    """Every schedule; with `include_one_off`, single tasks waiting for a future time."""
    rows = await database.fetch(pool, "list_schedules", schedule_id=None)
    one_off = None
    if include_one_off:
        tasks = await database.fetch(pool, "list_future_tasks", limit=one_off_limit)
        one_off = [TaskPublic.model_validate(dict(t)) for t in tasks]
    return ScheduledJobsPublic(
        schedules=[SchedulePublic.model_validate(dict(r)) for r in rows], one_off=one_off
    )


async def create_schedule(
    *, pool: database.Pool, registry: TaskRegistry, request: ScheduleCreate
) -> SchedulePublic:
    """Validate and store a schedule; its first run is the first due time from now."""
    check_params(task_type_named(registry, request.type), request.params)
    timing = _timing(request.cron, request.interval_seconds, request.timezone)
    try:
        schedule_id = await database.fetchval(
            pool,
            "insert_schedule",
            **request.model_dump(),
            next_run_at=timing.first_after(await _now(pool)),
        )
    except asyncpg.UniqueViolationError as exc:
        raise ScheduleNameTaken(request.name) from exc
    return await get_schedule(pool=pool, schedule_id=schedule_id)


async def update_schedule(
    *, pool: database.Pool, registry: TaskRegistry, schedule_id: int, patch: ScheduleUpdate
) -> SchedulePublic:
    """Change a schedule made through the API; a new timing restarts from now."""
    current = await get_schedule(pool=pool, schedule_id=schedule_id)
    if current.source == "code":
        raise ScheduleReadOnly(current.name)
    changes = patch.model_dump(exclude_unset=True, exclude_none=True)
    if "cron" in changes:
        changes["interval_seconds"] = None
    if "interval_seconds" in changes:
        changes.setdefault("cron", None)
    merged: dict[str, Any] = {**current.model_dump(), **changes}
    if "params" in changes:
        check_params(task_type_named(registry, current.type), merged["params"])
    timing = _timing(merged["cron"], merged["interval_seconds"], merged["timezone"])
    retimed = {"cron", "interval_seconds", "timezone"} & changes.keys() or (
        changes.get("enabled") and not current.enabled
    )
    next_run_at = timing.first_after(await _now(pool)) if retimed else current.next_run_at
    fields = ("params", "cron", "interval_seconds", "timezone", "priority", "queue")
    await database.execute(
        pool,
        "update_schedule",
        schedule_id=schedule_id,
        next_run_at=next_run_at,
        enabled=merged["enabled"],
        catch_up=merged["catch_up"],
        **{name: merged[name] for name in fields},
    )
    return await get_schedule(pool=pool, schedule_id=schedule_id)


async def set_schedule_enabled(
    *, pool: database.Pool, schedule_id: int, enabled: bool
) -> SchedulePublic:
    """Pause or resume. Runs due while paused are skipped: a resumed schedule
    next runs at its first due time from now."""
    current = await get_schedule(pool=pool, schedule_id=schedule_id)
    next_run_at = None
    if enabled and not current.enabled:
        timing = Timing(
            cron=current.cron, interval_seconds=current.interval_seconds, timezone=current.timezone
        )
        next_run_at = timing.first_after(await _now(pool))
    await database.execute(
        pool,
        "set_schedule_enabled",
        schedule_id=schedule_id,
        enabled=enabled,
        next_run_at=next_run_at,
    )
    return await get_schedule(pool=pool, schedule_id=schedule_id)


async def delete_schedule(*, pool: database.Pool, schedule_id: int) -> None:
    """Delete a schedule made through the API (its past tasks stay)."""
    current = await get_schedule(pool=pool, schedule_id=schedule_id)
    if current.source == "code":
        raise ScheduleReadOnly(current.name)
    await database.execute(pool, "delete_schedule", schedule_id=schedule_id)


async def run_schedule_now(
    *, pool: database.Pool, registry: TaskRegistry, schedule_id: int
) -> TaskPublic:
    """Defer one run of the schedule now, outside its timing."""
    async with pool.acquire() as conn, conn.transaction():
        row = await database.fetchrow(conn, "get_schedule_row", schedule_id=schedule_id)
        if row is None:
            raise ScheduleNotFound(schedule_id)

        async def rows(name: str, **params: Any) -> Sequence[Mapping[str, Any]]:
            return [dict(r) for r in await database.fetch(conn, name, **params)]

        job_id = await defer_run(rows, registry, dict(row), await _now(conn))
    assert job_id is not None  # now() is new for each transaction
    return await get_task(pool=pool, task_id=job_id)
