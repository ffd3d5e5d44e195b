"""Single submissions that arrive together are stored together: one statement, one commit."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from taskservice.errors import DatabaseError, UniqueViolation
from taskservice.models.tasks import TaskCreate, TaskPublic
from taskservice.registry import DEFAULT_QUEUE
from taskservice.store import asyncpg_driver as db

# Tasks in one statement at most; more wait for the next one.
MAX_GROUP = 100


def job_of(request: TaskCreate, args: dict[str, Any]) -> dict[str, Any]:
    """One element of the submit_tasks statement's JSON array."""
    return {
        "queue": request.queue or DEFAULT_QUEUE,
        "type": request.type,
        "priority": request.priority,
        "unique_key": request.unique_key,
        "args": args,
        "run_at": request.run_at.isoformat() if request.run_at else None,
        "delay_seconds": request.delay_seconds,
    }


async def insert_tasks(executor: db.Executor, jobs: list[dict[str, Any]]) -> list[TaskPublic]:
    """Defer `jobs` in one statement (all or none); the tasks as GET shows them, in order."""
    rows = await db.fetch(executor, "submit_tasks", tasks=jobs)
    return [TaskPublic.model_validate(dict(row)) for row in rows]


@dataclass(eq=False)
class _Waiting:
    job: dict[str, Any]
    answer: asyncio.Future[TaskPublic] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def settle(self, task: TaskPublic | None = None, error: BaseException | None = None) -> None:
        if self.answer.done():  # its request was cancelled (the client went away)
            return
        if error is not None:
            self.answer.set_exception(error)
        else:
            self.answer.set_result(task)  # type: ignore[arg-type]  # task given when no error


class GroupSubmitter:
    """Stores the tasks of POST /tasks: those that arrive while a statement is
    being committed go together in the next one. No timer: an idle submitter
    sends a task at once.

    Why: PostgreSQL runs the commits of transactions that NOTIFY one at a time
    (a global lock from pre-commit to the end of the commit, the WAL flush
    included), and every deferred job notifies (Procrastinate's wake-up of the
    workers, the service's event channel). One commit per task held the API to
    one task per disk flush (about 300/s here, against 1,400/s for an INSERT
    without NOTIFY); a group costs one flush for all its tasks.

    Each task keeps its own answer: when a group's statement fails (a taken
    unique_key, a value the database refuses), its tasks are sent again one by
    one, so only the one at fault gets the error. A database that cannot be
    reached fails the whole group, as it would each task."""

    def __init__(self, pool: db.Pool, *, max_group: int = MAX_GROUP) -> None:
        self._pool = pool
        self._max_group = max_group
        self._queue: list[_Waiting] = []
        self._sender: asyncio.Task[None] | None = None

    async def submit(self, job: dict[str, Any]) -> TaskPublic:
        """Store one task (see job_of); the task as GET /tasks/{id} shows it."""
        waiting = _Waiting(job)
        self._queue.append(waiting)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_all(), name="taskservice-submitter")
        return await waiting.answer

    async def close(self) -> None:
        """Wait for what was handed over to be stored (the API's shutdown)."""
        if self._sender is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender

    async def _send_all(self) -> None:
        while self._queue:
            group = self._queue[: self._max_group]
            del self._queue[: self._max_group]
            try:
                await self._send(group)
            except BaseException as exc:  # cancelled: no waiter is left hanging
                for waiting in [*group, *self._queue]:
                    waiting.settle(error=exc)
                self._queue.clear()
                raise

    async def _send(self, group: list[_Waiting]) -> None:
        try:
            tasks = await insert_tasks(self._pool, [w.job for w in group])
        except (UniqueViolation, DatabaseError) as exc:
            if len(group) == 1:
                group[0].settle(error=exc)
                return
            for waiting in group:  # which one is at fault: each on its own
                await self._send([waiting])
            return
        except Exception as exc:  # unreachable database, or a bug: for every one
            for waiting in group:
                waiting.settle(error=exc)
            return
        for waiting, task in zip(group, tasks, strict=True):
            waiting.settle(task)
