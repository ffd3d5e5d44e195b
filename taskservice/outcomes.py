"""Worker middleware that stores each run's result or error in the service's tables."""

from __future__ import annotations

import asyncio
import json
import traceback
from typing import Any

from procrastinate import BaseConnector, JobContext, exceptions
from procrastinate.job_context import AbortReason
from procrastinate.middleware import AsyncCallNext
from procrastinate.worker import Worker

from taskservice.queries import query
from taskservice.retry import WorkerLost, WorkerShutdown
from taskservice.runner import TaskTimeout


def describe_error(exc: BaseException, abort_reason: AbortReason | None = None) -> dict[str, Any]:
    """The error as clients see it: type, message and traceback.

    The service's own stop reasons get short type names (`timeout`, `aborted`,
    `worker_shutdown`, `worker_lost`); a task's exception keeps its class name."""
    stopped = isinstance(exc, asyncio.CancelledError | exceptions.JobAborted)
    if isinstance(exc, WorkerShutdown) or (stopped and abort_reason == AbortReason.SHUTDOWN):
        kind, message = "worker_shutdown", "its worker shut down mid-run; it will run again"
    elif stopped:
        kind, message = "aborted", "cancelled on request while running"
    elif isinstance(exc, TaskTimeout):
        kind, message = "timeout", str(exc)
    elif isinstance(exc, WorkerLost):
        kind, message = "worker_lost", str(exc)
    else:
        return {
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": "".join(traceback.format_exception(exc)),
        }
    return {"type": kind, "message": message, "traceback": None}


async def execute(connector: BaseConnector, name: str, /, **params: Any) -> None:
    """Run a named query on Procrastinate's connection pool (dicts and lists as JSON)."""
    encoded = {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in params.items()}
    # Shielded: an abort cancels the task, but its outcome must still be written.
    await asyncio.shield(connector.execute_query_async(query(name).psycopg_text, **encoded))


async def record_failure(worker: Worker, job_id: int, error: dict[str, Any]) -> None:
    """Store the error of the job's current run (and as the task's last error)."""
    await execute(worker.app.connector, "record_task_failure", job_id=job_id, error=error)


async def record_outcome(call_next: AsyncCallNext, context: JobContext, worker: Worker) -> Any:
    """Run the job, then store its result or error.

    The record is written before Procrastinate marks the job finished, so a
    client that reads `completed` always finds the result there. Start and
    finish times are kept by triggers on the job's status."""
    job_id = context.job.id
    assert job_id is not None
    try:
        result = await call_next()
    except asyncio.CancelledError as exc:
        reason = context.abort_reason()
        await record_failure(worker, job_id, describe_error(exc, reason))
        if reason == AbortReason.SHUTDOWN:
            # Procrastinate would end an async job cancelled by a shutdown as
            # `aborted`, for good; as an ordinary failure it is retried.
            raise WorkerShutdown(str(exc)) from exc
        raise
    except BaseException as exc:
        await record_failure(worker, job_id, describe_error(exc, context.abort_reason()))
        raise
    await execute(
        worker.app.connector, "record_task_success", job_id=job_id, result=json.dumps(result)
    )
    return result
