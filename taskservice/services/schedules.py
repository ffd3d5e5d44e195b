"""The scheduler's service layer: schedules created at run time or declared in code."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from taskservice.errors import (
    InvalidTaskRequest,
    ScheduleNameTaken,
    ScheduleNotFound,
    ScheduleReadOnly,
    UniqueViolation,
)
from taskservice.models.schedules import (
    ScheduleCreate,
    ScheduledJobsPublic,
    SchedulePublic,
    ScheduleUpdate,
)
from taskservice.models.tasks import TaskPublic
from taskservice.registry import INTERNAL_PRIORITY, INTERNAL_QUEUE, PeriodicSchedule, TaskRegistry
from taskservice.services.rules import SubmitRules
from taskservice.services.tasks import check_params, get_task, task_type_named
from taskservice.settings import Settings
from taskservice.store import asyncpg_driver as db
from taskservice.store.schedule_runs import code_schedule_params, defer_run
from taskservice.timing import Timing

CLEANUP_TASK = "taskservice.cleanup"
CLEANUP_SCHEDULE = "taskservice.cleanup"


def cleanup_schedule(retention_days: float, idempotency_key_days: float) -> PeriodicSchedule:
    """The clean-up, hourly, keeping `retention_days` of finished tasks."""
    return PeriodicSchedule(
        name=CLEANUP_SCHEDULE,
        type=CLEANUP_TASK,
        params={"older_than_days": retention_days, "idempotency_key_days": idempotency_key_days},
        cron="17 * * * *",
        catch_up="once",
        queue=INTERNAL_QUEUE,
        priority=INTERNAL_PRIORITY,
    )


def code_schedules(settings: Settings, registry: TaskRegistry) -> list[PeriodicSchedule]:
    """The schedules declared in code: the task modules' and the built-in clean-up."""
    cleanup = cleanup_schedule(
        settings.retention_days, settings.idempotency_retention_seconds / 86_400
    )
    return [*registry.schedules.values(), cleanup]


async def _now(conn: db.Executor) -> dt.datetime:
    now: dt.datetime = await db.fetchval(conn, "database_now")
    return now


def _timing(cron: str | None, interval: float | None, timezone: str) -> Timing:
    try:
        return Timing(cron=cron, interval_seconds=interval, timezone=timezone)
    except ValueError as exc:
        raise InvalidTaskRequest(
            [{"loc": ["body", "cron"], "msg": str(exc), "type": "value_error"}]
        ) from exc


def _first_run(timing: Timing, after: dt.datetime) -> dt.datetime:
    """The first run after `after`, or a 422 if the timing never gives one."""
    try:
        return timing.first_after(after)
    except ValueError as exc:
        raise InvalidTaskRequest(
            [{"loc": ["body", "cron"], "msg": str(exc), "type": "value_error"}]
        ) from exc


async def sync_code_schedules(*, pool: db.Pool, schedules: Iterable[PeriodicSchedule]) -> None:
    """Create or update the schedules declared in code (workers do it too)."""
    now = await _now(pool)
    for schedule in schedules:
        await db.execute(pool, "sync_code_schedule", **code_schedule_params(schedule, now))


async def get_schedule(*, pool: db.Pool, schedule_id: int) -> SchedulePublic:
    """One schedule with its last run and run counts, or ScheduleNotFound."""
    row = await db.fetchrow(pool, "list_schedules", schedule_id=schedule_id)
    if row is None:
        raise ScheduleNotFound(schedule_id)
    return SchedulePublic.model_validate(dict(row))


async def list_schedules(
    *,
    pool: db.Pool,
    include_one_off: bool = False,
    one_off_limit: int = 500,
    owner: int | None = None,
) -> ScheduledJobsPublic:
    """Every schedule; with `include_one_off`, single tasks waiting for a future
    time (with an `owner`, only that API key's)."""
    rows = await db.fetch(pool, "list_schedules", schedule_id=None)
    one_off = None
    if include_one_off:
        tasks = await db.fetch(pool, "list_future_tasks", limit=one_off_limit, owner=owner)
        one_off = [TaskPublic.model_validate(dict(t)) for t in tasks]
    return ScheduledJobsPublic(
        schedules=[SchedulePublic.model_validate(dict(r)) for r in rows], one_off=one_off
    )


async def create_schedule(
    *,
    pool: db.Pool,
    registry: TaskRegistry,
    request: ScheduleCreate,
    owner: int | None = None,
    rules: SubmitRules | None = None,
) -> SchedulePublic:
    """Validate and store a schedule, created by API key `owner` (its runs are
    that key's tasks); its first run is the first due time from now."""
    rules = rules or SubmitRules()
    task = task_type_named(registry, request.type)
    await rules.check_params(task, check_params(task, request.params))
    if request.callback_url is not None:
        await rules.check(request.callback_url)
    timing = _timing(request.cron, request.interval_seconds, request.timezone)
    try:
        schedule_id = await db.fetchval(
            pool,
            "insert_schedule",
            **request.model_dump(),
            next_run_at=_first_run(timing, await _now(pool)),
            owner=owner,
        )
    except UniqueViolation as exc:
        raise ScheduleNameTaken(request.name) from exc
    return await get_schedule(pool=pool, schedule_id=schedule_id)


async def update_schedule(
    *,
    pool: db.Pool,
    registry: TaskRegistry,
    schedule_id: int,
    patch: ScheduleUpdate,
    rules: SubmitRules | None = None,
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
    if "callback_url" in changes:
        await (rules or SubmitRules()).check(changes["callback_url"])
    if "params" in changes:
        task = task_type_named(registry, current.type)
        await (rules or SubmitRules()).check_params(task, check_params(task, merged["params"]))
    timing = _timing(merged["cron"], merged["interval_seconds"], merged["timezone"])
    retimed = {"cron", "interval_seconds", "timezone"} & changes.keys() or (
        changes.get("enabled") and not current.enabled
    )
    next_run_at = _first_run(timing, await _now(pool)) if retimed else current.next_run_at
    fields = (
        "params",
        "cron",
        "interval_seconds",
        "timezone",
        "priority",
        "queue",
        "callback_url",
    )
    await db.execute(
        pool,
        "update_schedule",
        schedule_id=schedule_id,
        next_run_at=next_run_at,
        enabled=merged["enabled"],
        catch_up=merged["catch_up"],
        **{name: merged[name] for name in fields},
    )
    return await get_schedule(pool=pool, schedule_id=schedule_id)


async def set_schedule_enabled(*, pool: db.Pool, schedule_id: int, enabled: bool) -> SchedulePublic:
    """Pause or resume. Runs due while paused are skipped: a resumed schedule
    next runs at its first due time from now."""
    current = await get_schedule(pool=pool, schedule_id=schedule_id)
    next_run_at = None
    if enabled and not current.enabled:
        timing = Timing(
            cron=current.cron, interval_seconds=current.interval_seconds, timezone=current.timezone
        )
        next_run_at = timing.first_after(await _now(pool))
    await db.execute(
        pool,
        "set_schedule_enabled",
        schedule_id=schedule_id,
        enabled=enabled,
        next_run_at=next_run_at,
    )
    return await get_schedule(pool=pool, schedule_id=schedule_id)


async def delete_schedule(*, pool: db.Pool, schedule_id: int) -> None:
    """Delete a schedule made through the API (its past tasks stay)."""
    current = await get_schedule(pool=pool, schedule_id=schedule_id)
    if current.source == "code":
        raise ScheduleReadOnly(current.name)
    await db.execute(pool, "delete_schedule", schedule_id=schedule_id)


async def run_schedule_now(
    *, pool: db.Pool, registry: TaskRegistry, schedule_id: int
) -> TaskPublic:
    """Defer one run of the schedule now, outside its timing."""
    async with db.transaction(pool) as conn:
        row = await db.fetchrow(conn, "get_schedule_row", schedule_id=schedule_id)
        if row is None:
            raise ScheduleNotFound(schedule_id)

        async def rows(name: str, **params: Any) -> Sequence[Mapping[str, Any]]:
            return [dict(r) for r in await db.fetch(conn, name, **params)]

        job_id = await defer_run(rows, registry, dict(row), await _now(conn))
    assert job_id is not None  # now() is new for each transaction
    return await get_task(pool=pool, task_id=job_id)
