"""Routes for /workers and /stats/throughput: what the service has been doing lately."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from taskservice.api.auth import ReadAccess
from taskservice.api.deps import PoolDep, SettingsDep
from taskservice.models.activity import ThroughputPublic, WorkerPublic
from taskservice.services import activity

router = APIRouter()


@router.get("/workers", response_model=list[WorkerPublic])
async def workers(pool: PoolDep, settings: SettingsDep, _: ReadAccess) -> list[WorkerPublic]:
    """Every registered worker with its last heartbeat and the tasks it runs now;
    alive while its heartbeat is younger than TASKSERVICE_STALLED_AFTER_SECONDS."""
    return await activity.list_workers(
        pool=pool, live_within_seconds=settings.stalled_after_seconds
    )


@router.get("/stats/throughput", response_model=ThroughputPublic)
async def throughput(
    pool: PoolDep,
    _: ReadAccess,
    minutes: Annotated[int, Query(ge=1, le=1440, description="How many minutes back.")] = 60,
) -> ThroughputPublic:
    """Tasks completed and failed per minute, the current minute last."""
    return await activity.task_throughput(pool=pool, minutes=minutes)
