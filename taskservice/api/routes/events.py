"""Server-Sent Events: GET /tasks/{id}/events (one task) and GET /events (every task)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import StreamingResponse

from taskservice.api.auth import ReadAccess
from taskservice.api.deps import ListenerDep, PoolDep, SettingsDep
from taskservice.models.tasks import PG_BIGINT_MAX, TaskStatus
from taskservice.services import events
from taskservice.services.tasks import get_task

router = APIRouter()

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "An event stream."}
}


def _encode(event: events.StreamEvent) -> str:
    if event.data is None:
        return ": keepalive\n\n"
    lines = [f"event: {event.kind}"]
    if event.id is not None:
        lines.append(f"id: {event.id}")
    lines.append("data: " + json.dumps(event.data, separators=(",", ":"), default=str))
    return "\n".join(lines) + "\n\n"


async def _sse(stream: AsyncIterator[events.StreamEvent]) -> AsyncIterator[str]:
    async for event in stream:
        yield _encode(event)


@router.get(
    "/tasks/{task_id}/events", response_class=StreamingResponse, responses={**_STREAM_DOC, 404: {}}
)
async def task_events(
    task_id: Annotated[int, Path(ge=1, le=PG_BIGINT_MAX)],
    pool: PoolDep,
    listener: ListenerDep,
    access: ReadAccess,
) -> StreamingResponse:
    """The task's state (`task`), its `status` changes and `progress` as they
    happen, and its final state (`task`) after which the stream ends."""
    owner = access.owner_filter
    await get_task(pool=pool, task_id=task_id, owner=owner)  # a 404 before the stream starts
    stream = events.task_stream(pool=pool, listener=listener, task_id=task_id, owner=owner)
    return StreamingResponse(_sse(stream), media_type="text/event-stream", headers=_SSE_HEADERS)


@router.get("/events", response_class=StreamingResponse, responses=_STREAM_DOC)
async def all_events(
    pool: PoolDep,
    listener: ListenerDep,
    settings: SettingsDep,
    access: ReadAccess,
    type: Annotated[list[str] | None, Query(description="Only these task types.")] = None,
    queue: Annotated[list[str] | None, Query(description="Only these queues.")] = None,
    status: Annotated[list[TaskStatus] | None, Query(description="Only these statuses.")] = None,
    last_event_id: Annotated[
        int | None,
        Header(
            alias="Last-Event-ID",
            ge=0,
            le=PG_BIGINT_MAX,
            description="Resume after this event (within TASKSERVICE_EVENTS_RESUME_SECONDS).",
        ),
    ] = None,
) -> StreamingResponse:
    """Every task's `status` changes (each with an `id` to resume from) and
    `progress`, filtered by type, queue and status; never ends by itself."""
    filters = events.EventFilter(
        types=frozenset(type or ()),
        queues=frozenset(queue or ()),
        statuses=frozenset(s.value for s in status or ()),
        owner=access.owner_filter,
    )
    stream = events.all_tasks_stream(
        pool=pool,
        listener=listener,
        filters=filters,
        last_event_id=last_event_id,
        resume_window_seconds=settings.events_resume_seconds,
    )
    return StreamingResponse(_sse(stream), media_type="text/event-stream", headers=_SSE_HEADERS)
