"""Routes for batches: POST /tasks/batch and GET /batches/{id}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from taskservice.api.auth import ReadAccess, SubmitAccess
from taskservice.api.deps import ListenerDep, MetricsDep, PoolDep, RegistryDep, SettingsDep
from taskservice.models.batches import BatchCreate, BatchCreated, BatchPublic
from taskservice.models.tasks import PG_BIGINT_MAX
from taskservice.services import batches as service
from taskservice.services import events
from taskservice.services.rules import SubmitRules

router = APIRouter()

BatchId = Annotated[int, Path(ge=1, le=PG_BIGINT_MAX, description="The batch's id.")]


@router.post(
    "/tasks/batch",
    status_code=status.HTTP_201_CREATED,
    response_model=BatchCreated,
    responses={409: {}},
)
async def submit_batch(
    body: BatchCreate,
    response: Response,
    pool: PoolDep,
    reg: RegistryDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    access: SubmitAccess,
) -> BatchCreated:
    """Up to 1,000 tasks in one transaction: all stored, or none (a 422 names
    each wrong item by its index). The ids come back in the order given."""
    created = await service.submit_batch(
        pool=pool,
        registry=reg,
        request=body,
        rules=SubmitRules.from_settings(settings),
        owner=access.key_id,
    )
    for item in body.tasks:
        metrics.submitted.labels(item.type, item.queue or "default").inc()
    response.headers["Location"] = f"/batches/{created.batch_id}"
    return created


@router.get("/batches/{batch_id}", response_model=BatchPublic, responses={404: {}})
async def get_batch(
    batch_id: BatchId,
    pool: PoolDep,
    listener: ListenerDep,
    access: ReadAccess,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=events.MAX_WAIT_SECONDS,
            description="Answer once every task has ended, or after this many seconds.",
        ),
    ] = 0,
) -> BatchPublic:
    """A batch's tasks per status and whether all have ended (`done`)."""
    if wait > 0:
        return await events.wait_for_batch(
            pool=pool,
            listener=listener,
            batch_id=batch_id,
            seconds=wait,
            owner=access.owner_filter,
        )
    return await service.get_batch(pool=pool, batch_id=batch_id, owner=access.owner_filter)
