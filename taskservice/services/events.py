"""Results without polling: wait for a task or a batch, stream a task's or every task's changes.

Notifications come from the database (the status trigger and record_progress
pg_notify on one channel) through the API process's one EventListener; a
waiting request holds no database connection, only a subscription. Whatever
the listener may have missed (a reconnect, a slow subscriber) makes the waiter
read the row again, so none trusts a lost event, and none waits past its time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from taskservice.models.batches import BatchPublic
from taskservice.models.tasks import TaskPublic, TaskStatus
from taskservice.registry import RESERVED_PREFIX
from taskservice.services.batches import get_batch
from taskservice.services.tasks import get_task
from taskservice.store import asyncpg_driver as db
from taskservice.store.listener import RESYNC, EventListener

FINAL = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})
MAX_WAIT_SECONDS = 60.0
# While the listener is down, waiters read their row this often instead.
FALLBACK_READ_SECONDS = 1.0
# A comment line this often keeps proxies from closing a quiet stream.
KEEPALIVE_SECONDS = 15.0
# Events replayed at most after a Last-Event-ID.
MAX_REPLAY = 10_000


@dataclass(frozen=True)
class StreamEvent:
    """One Server-Sent Event: `kind` is its `event:` line; `id` (for status
    changes) is the Last-Event-ID to resume from; None data is a keep-alive."""

    kind: str
    data: dict[str, Any] | None = None
    id: int | None = None


def _interval(listener: EventListener, remaining: float) -> float:
    if listener.connected.is_set():
        return remaining
    return min(remaining, FALLBACK_READ_SECONDS)


async def wait_for_task(
    *,
    pool: db.Pool,
    listener: EventListener,
    task_id: int,
    seconds: float,
    owner: int | None = None,
) -> TaskPublic:
    """The task once it reaches a final status, or as it is after `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    # Subscribed before the first read: an end between the two is not missed.
    with listener.subscribe(task_id=task_id) as sub:
        task = await get_task(pool=pool, task_id=task_id, with_history=True, owner=owner)
        while task.status not in FINAL:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            event = await sub.get(_interval(listener, remaining))
            if event is None and listener.connected.is_set():
                continue  # the time is up: read once more below
            if event is None or event is RESYNC or event.get("status") in FINAL:
                task = await get_task(pool=pool, task_id=task_id, with_history=True, owner=owner)
        else:
            return task
    return await get_task(pool=pool, task_id=task_id, with_history=True, owner=owner)


async def wait_for_batch(
    *,
    pool: db.Pool,
    listener: EventListener,
    batch_id: int,
    seconds: float,
    owner: int | None = None,
) -> BatchPublic:
    """The batch once all its tasks ended, or as it is after `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    with listener.subscribe(batch_id=batch_id) as sub:
        batch = await get_batch(pool=pool, batch_id=batch_id, owner=owner)
        while not batch.done:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            event = await sub.get(_interval(listener, remaining))
            if event is None and listener.connected.is_set():
                continue
            # Its tasks' changes are not worth a read each: only the last one.
            if event is None or event is RESYNC or event.get("kind") == "batch":
                batch = await get_batch(pool=pool, batch_id=batch_id, owner=owner)
        else:
            return batch
    return await get_batch(pool=pool, batch_id=batch_id, owner=owner)


def _change(event: dict[str, Any]) -> StreamEvent:
    """A notification as a stream event: status changes carry their id."""
    data = {k: v for k, v in event.items() if k not in ("kind", "event_id")}
    if event.get("kind") == "progress":
        return StreamEvent("progress", data)
    event_id = event.get("event_id")
    return StreamEvent("status", data, event_id if isinstance(event_id, int) else None)


async def task_stream(
    *, pool: db.Pool, listener: EventListener, task_id: int, owner: int | None = None
) -> AsyncIterator[StreamEvent]:
    """`task` (its current state), then `status` and `progress` events as they
    happen, and `task` again (with result or error) after the final status."""
    with listener.subscribe(task_id=task_id) as sub:
        task = await get_task(pool=pool, task_id=task_id, owner=owner)
        yield StreamEvent("task", task.model_dump(mode="json"))
        status = task.status
        while status not in FINAL:
            event = await sub.get(_interval(listener, KEEPALIVE_SECONDS))
            if event is None and listener.connected.is_set():
                yield StreamEvent("keepalive")
                continue
            if event is None or event is RESYNC:
                task = await get_task(pool=pool, task_id=task_id, owner=owner)
                if task.status != status:
                    yield StreamEvent("status", {"id": task_id, "status": task.status.value})
                status = task.status
                continue
            yield _change(event)
            if event.get("kind") == "status":
                status = TaskStatus(event["status"])
        task = await get_task(pool=pool, task_id=task_id, with_history=True, owner=owner)
        yield StreamEvent("task", task.model_dump(mode="json"))


@dataclass(frozen=True)
class EventFilter:
    """What GET /events streams: any of these types, queues and statuses (empty: all)."""

    types: frozenset[str] = frozenset()
    queues: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()
    # An API key without `admin` sees its own tasks only.
    owner: int | None = None

    def matches(self, event: dict[str, Any]) -> bool:
        if str(event.get("type", "")).startswith(RESERVED_PREFIX):
            return False  # the service's own jobs, as in GET /tasks
        if self.owner is not None and event.get("owner") != self.owner:
            return False
        if self.types and event.get("type") not in self.types:
            return False
        if self.queues and event.get("queue") not in self.queues:
            return False
        return not self.statuses or event.get("status") in self.statuses


async def _replay(
    pool: db.Pool, after_id: int, window_seconds: float, owner: int | None
) -> list[dict[str, Any]]:
    rows = await db.fetch(
        pool,
        "task_events_since",
        after_id=after_id,
        owner=owner,
        window_seconds=window_seconds,
        limit=MAX_REPLAY,
    )
    return [{"kind": "status", **dict(row)} for row in rows]


async def all_tasks_stream(
    *,
    pool: db.Pool,
    listener: EventListener,
    filters: EventFilter,
    last_event_id: int | None,
    resume_window_seconds: float,
) -> AsyncIterator[StreamEvent]:
    """`open` once subscribed, then every task's changes as they happen. With
    `last_event_id`, the status changes after it (within the resume window)
    come first; after a listener reconnect, those it missed are read back the
    same way."""
    with listener.subscribe(everything=True) as sub:
        # Subscribed: from here on nothing is missed, and the client knows it.
        yield StreamEvent("open", {"last_event_id": last_event_id})
        last_id = last_event_id
        replay = last_id is not None
        replayed: set[int] = set()
        while True:
            if replay and last_id is not None:
                replayed = set()
                for event in await _replay(pool, last_id, resume_window_seconds, filters.owner):
                    last_id = event["event_id"]
                    replayed.add(event["event_id"])
                    if filters.matches(event):
                        yield _change(event)
            replay = False
            next_event = await sub.get(KEEPALIVE_SECONDS)
            if next_event is None:
                yield StreamEvent("keepalive")
                continue
            event = next_event
            if event is RESYNC:
                replay = True  # read back what the listener may have missed
                continue
            event_id = event.get("event_id")
            if isinstance(event_id, int):
                if event_id in replayed:
                    continue
                # Transactions commit out of id order: keep the highest seen.
                last_id = max(event_id, last_id or 0)
            if filters.matches(event):
                yield _change(event)
