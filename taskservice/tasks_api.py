"""Routes for tasks, queues, task types and health."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response, status
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from taskservice import service
from taskservice.deps import MetricsDep, PoolDep, RegistryDep, SettingsDep
from taskservice.models import (
    PG_BIGINT_MAX,
    Health,
    QueuePublic,
    TaskCreate,
    TaskFilters,
    TaskPublic,
    TasksPublic,
    TaskStatus,
)

router = APIRouter()

TaskId = Annotated[int, Path(ge=1, le=PG_BIGINT_MAX, description="The task's id.")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Repeat a submission safely: the same key and body give back the first task.",
    ),
]


@router.post(
    "/tasks",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskPublic,
    responses={200: {"model": TaskPublic, "description": "Idempotent replay"}, 409: {}},
)
async def submit(
    body: TaskCreate,
    response: Response,
    pool: PoolDep,
    reg: RegistryDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    idempotency_key: IdempotencyKey = None,
) -> TaskPublic:
    """Submit a task; its params are checked against its type before it is stored."""
    task, created = await service.submit_task(
        pool=pool,
        registry=reg,
        request=body,
        idempotency_key=idempotency_key,
        idempotency_retention_seconds=settings.idempotency_retention_seconds,
    )
    response.headers["Location"] = f"/tasks/{task.id}"
    if created:
        metrics.submitted.labels(task.type, task.queue).inc()
    else:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    return task


@router.get("/tasks", response_model=TasksPublic)
async def list_tasks(filters: Annotated[TaskFilters, Query()], pool: PoolDep) -> TasksPublic:
    """Tasks newest first, filtered; follow `next_cursor` for the next page."""
    return await service.list_tasks(pool=pool, filters=filters)


@router.get("/tasks/{task_id}", response_model=TaskPublic, responses={404: {}})
async def get_task(task_id: TaskId, pool: PoolDep) -> TaskPublic:
    """One task with its status, result, error and every attempt."""
    return await service.get_task(pool=pool, task_id=task_id, with_history=True)


@router.delete(
    "/tasks/{task_id}",
    response_model=TaskPublic,
    responses={202: {"model": TaskPublic}, 404: {}, 409: {}},
)
async def cancel(
    task_id: TaskId, response: Response, pool: PoolDep, metrics: MetricsDep
) -> TaskPublic:
    """Cancel a pending task (200), or ask a running one to stop (202)."""
    task = await service.cancel_task(pool=pool, task_id=task_id)
    if task.status is TaskStatus.CANCELLED:
        metrics.cancelled.labels(task.type, task.queue).inc()
    else:  # running: its worker counts it when it stops
        response.status_code = status.HTTP_202_ACCEPTED
    return task


@router.post("/tasks/{task_id}/retry", response_model=TaskPublic, responses={404: {}, 409: {}})
async def retry(task_id: TaskId, pool: PoolDep) -> TaskPublic:
    """Run a failed or cancelled task again: a new attempt of the same task."""
    return await service.retry_task(pool=pool, task_id=task_id)


@router.get("/queues", response_model=list[QueuePublic])
async def queues(pool: PoolDep) -> list[QueuePublic]:
    """Every queue with its tasks per status and the wait of its oldest due task."""
    return await service.list_queues(pool=pool)


@router.get("/task-types")
async def task_types(reg: RegistryDep) -> dict[str, Any]:
    """The task types this deployment runs, with the JSON schema of their params."""
    return {
        name: {
            "description": reg[name].description,
            "params": reg[name].params_model.model_json_schema(),
            "max_attempts": reg[name].retry.max_attempts,
            "max_attempts_limit": reg[name].retry.max_attempts_limit,
            "timeout_seconds": reg[name].timeout_seconds,
        }
        for name in reg.names
    }


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
@router.get("/health/ready", response_model=Health, responses={503: {"model": Health}})
async def health(response: Response, pool: PoolDep) -> Health:
    """Ready: database reachable and schema at the expected version (else 503);
    also counts workers with a recent heartbeat."""
    result = await service.check_health(pool=pool)
    if result.status != "ok":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return result


@router.get("/health/live")
async def live() -> dict[str, str]:
    """Alive: the process answers. No database call, so a database outage does
    not get every API replica restarted."""
    return {"status": "ok"}


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics_endpoint(pool: PoolDep, metrics: MetricsDep) -> PlainTextResponse:
    """Prometheus metrics; queue depth is read from PostgreSQL on each scrape."""
    await service.read_queue_depth(pool=pool, metrics=metrics)
    return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE_LATEST)
