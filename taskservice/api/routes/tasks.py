"""Routes for /tasks: submit, list, read, cancel and retry."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from pydantic import BeforeValidator, TypeAdapter

from taskservice.api.auth import ReadAccess, SubmitAccess, authorize
from taskservice.api.deps import MetricsDep, PoolDep, Resources, ResourcesDep, SettingsDep
from taskservice.api.fast_path import fast_path
from taskservice.models.fields import canonical_int
from taskservice.models.keys import Scope
from taskservice.models.tasks import (
    PG_BIGINT_MAX,
    TaskCreate,
    TaskFilters,
    TaskPublic,
    TasksPublic,
)
from taskservice.services import events
from taskservice.services import tasks as service
from taskservice.services.events import MAX_WAIT_SECONDS
from taskservice.services.rules import SubmitRules

router = APIRouter()

TaskId = Annotated[
    int, Path(ge=1, le=PG_BIGINT_MAX, description="The task's id."), BeforeValidator(canonical_int)
]
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
    res: ResourcesDep,
    access: SubmitAccess,
    idempotency_key: IdempotencyKey = None,
) -> TaskPublic:
    """Submit a task; its params are checked against its type before it is stored."""
    metrics = res.metrics
    task, created = await service.submit_task(
        pool=res.pool,
        registry=res.registry,
        request=body,
        idempotency_key=idempotency_key,
        idempotency_retention_seconds=res.settings.idempotency_retention_seconds,
        owner=access.key_id,
        rules=SubmitRules.from_settings(res.settings),
        submitter=res.submitter,
    )
    response.headers["Location"] = f"/tasks/{task.id}"
    if created:
        metrics.submitted.labels(task.type, metrics.queue_label(task.queue)).inc()
    else:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    return task


@router.get("/tasks", response_model=TasksPublic)
async def list_tasks(
    filters: Annotated[TaskFilters, Query()],
    pool: PoolDep,
    access: ReadAccess,
    settings: SettingsDep,
) -> TasksPublic:
    """Tasks newest first, filtered; follow `next_cursor` for the next page. A
    key without `admin` sees only its own tasks. A page ends early once its params,
    results and errors reach TASKSERVICE_LIST_PAGE_BYTES."""
    return await service.list_tasks(
        pool=pool,
        filters=filters,
        owner=access.owner_filter,
        page_bytes=settings.list_page_bytes,
    )


async def get_task(
    task_id: TaskId,
    res: ResourcesDep,
    access: ReadAccess,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_WAIT_SECONDS,
            description="Answer once the task ends, or after this many seconds (0-60).",
        ),
    ] = 0,
) -> TaskPublic:
    """One task with its status, result, error and every attempt (another key's
    task is a 404 to a key without `admin`); with `wait`, as soon as it reaches
    a final status (or as it is when the wait runs out)."""
    if wait > 0:
        return await events.wait_for_task(
            pool=res.pool,
            listener=res.listener,
            task_id=task_id,
            seconds=wait,
            owner=access.owner_filter,
        )
    return await service.get_task(
        pool=res.pool, task_id=task_id, with_history=True, owner=access.owner_filter
    )


_TASK_ID = re.compile(r"[1-9][0-9]{0,18}")


async def read_task_now(request: Request) -> Response | None:
    """GET /tasks/{id} without a query string, the busiest read, as `get_task`
    answers it; anything else (a malformed id, `wait`, any query) is left to
    FastAPI, which validates it."""
    raw_id: str = request.path_params["task_id"]
    if request.scope["query_string"] or not _TASK_ID.fullmatch(raw_id):
        return None
    task_id = int(raw_id)
    if task_id > PG_BIGINT_MAX:
        return None
    access = await authorize(request, Scope.READ)
    res: Resources = request.app.state.resources
    task = await service.get_task(
        pool=res.pool, task_id=task_id, with_history=True, owner=access.owner_filter
    )
    return Response(_TASK_JSON.dump_json(task), media_type="application/json")


_TASK_JSON = TypeAdapter(TaskPublic)

router.add_api_route(
    "/tasks/{task_id}",
    get_task,
    methods=["GET"],
    response_model=TaskPublic,
    responses={404: {}},
    route_class_override=fast_path(read_task_now),
)


@router.delete(
    "/tasks/{task_id}",
    response_model=TaskPublic,
    responses={202: {"model": TaskPublic}, 404: {}, 409: {}},
)
async def cancel(
    task_id: TaskId, response: Response, pool: PoolDep, metrics: MetricsDep, access: SubmitAccess
) -> TaskPublic:
    """Cancel a pending task (200), or ask a running one to stop (202, whether
    or not it has stopped by the time of the answer)."""
    task, was_running = await service.cancel_task(
        pool=pool, task_id=task_id, owner=access.owner_filter
    )
    if was_running:  # its worker counts it when it stops
        response.status_code = status.HTTP_202_ACCEPTED
    else:
        metrics.cancelled.labels(task.type, metrics.queue_label(task.queue)).inc()
    return task


@router.post("/tasks/{task_id}/retry", response_model=TaskPublic, responses={404: {}, 409: {}})
async def retry(task_id: TaskId, pool: PoolDep, access: SubmitAccess) -> TaskPublic:
    """Run a failed or cancelled task again: a new attempt of the same task."""
    return await service.retry_task(pool=pool, task_id=task_id, owner=access.owner_filter)
