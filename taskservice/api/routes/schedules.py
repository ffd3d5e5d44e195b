"""Routes for /scheduler/jobs: periodic schedules, and what else will run later."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BeforeValidator

from taskservice.api.auth import AdminAccess, ReadAccess
from taskservice.api.deps import PoolDep, RegistryDep, SettingsDep
from taskservice.models.fields import canonical_int
from taskservice.models.schedules import (
    ScheduleCreate,
    ScheduledJobsPublic,
    SchedulePublic,
    ScheduleUpdate,
)
from taskservice.models.tasks import PG_BIGINT_MAX, TaskPublic
from taskservice.services import schedules as scheduling
from taskservice.services.rules import SubmitRules

router = APIRouter(prefix="/scheduler/jobs", tags=["scheduler"])

ScheduleId = Annotated[
    int,
    Path(ge=1, le=PG_BIGINT_MAX, description="The schedule's id."),
    BeforeValidator(canonical_int),
]


@router.get("", response_model=ScheduledJobsPublic)
async def list_jobs(
    pool: PoolDep,
    access: ReadAccess,
    include: Annotated[
        Literal["one_off"] | None,
        Query(description="`one_off` adds single tasks waiting for a future time."),
    ] = None,
) -> ScheduledJobsPublic:
    """Every schedule (from code and from the API), and optionally future single tasks."""
    return await scheduling.list_schedules(
        pool=pool, include_one_off=include == "one_off", owner=access.owner_filter
    )


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=SchedulePublic, responses={409: {}}
)
async def create(
    body: ScheduleCreate,
    response: Response,
    pool: PoolDep,
    reg: RegistryDep,
    access: AdminAccess,
    settings: SettingsDep,
) -> SchedulePublic:
    """Create a schedule; its type, params, cron and time zone are checked first."""
    schedule = await scheduling.create_schedule(
        pool=pool,
        registry=reg,
        request=body,
        owner=access.key_id,
        rules=SubmitRules.from_settings(settings),
    )
    response.headers["Location"] = f"/scheduler/jobs/{schedule.id}"
    return schedule


@router.get("/{schedule_id}", response_model=SchedulePublic, responses={404: {}})
async def get(schedule_id: ScheduleId, pool: PoolDep, _: ReadAccess) -> SchedulePublic:
    """One schedule with its next and last run and its run counts."""
    return await scheduling.get_schedule(pool=pool, schedule_id=schedule_id)


@router.patch("/{schedule_id}", response_model=SchedulePublic, responses={404: {}, 409: {}})
async def update(
    schedule_id: ScheduleId,
    body: ScheduleUpdate,
    pool: PoolDep,
    reg: RegistryDep,
    _: AdminAccess,
    settings: SettingsDep,
) -> SchedulePublic:
    """Change a schedule made through the API (timing, params, enabled, ...)."""
    return await scheduling.update_schedule(
        pool=pool,
        registry=reg,
        schedule_id=schedule_id,
        patch=body,
        rules=SubmitRules.from_settings(settings),
    )


@router.delete(
    "/{schedule_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: {}, 409: {}}
)
async def delete(schedule_id: ScheduleId, pool: PoolDep, _: AdminAccess) -> None:
    """Delete a schedule made through the API; tasks it already made stay."""
    await scheduling.delete_schedule(pool=pool, schedule_id=schedule_id)


@router.post("/{schedule_id}/pause", response_model=SchedulePublic, responses={404: {}})
async def pause(schedule_id: ScheduleId, pool: PoolDep, _: AdminAccess) -> SchedulePublic:
    """Stop deferring runs (code-declared schedules too)."""
    return await scheduling.set_schedule_enabled(pool=pool, schedule_id=schedule_id, enabled=False)


@router.post("/{schedule_id}/resume", response_model=SchedulePublic, responses={404: {}})
async def resume(schedule_id: ScheduleId, pool: PoolDep, _: AdminAccess) -> SchedulePublic:
    """Start again from the next due time; runs due while paused are skipped."""
    return await scheduling.set_schedule_enabled(pool=pool, schedule_id=schedule_id, enabled=True)


@router.post(
    "/{schedule_id}/run",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskPublic,
    responses={404: {}},
)
async def run_now(
    schedule_id: ScheduleId, pool: PoolDep, reg: RegistryDep, _: AdminAccess
) -> TaskPublic:
    """Defer one run now, whatever the timing; returns the task."""
    return await scheduling.run_schedule_now(pool=pool, registry=reg, schedule_id=schedule_id)
