"""Worker middleware that stores each run's result or error in taskservice.task_records."""

from __future__ import annotations

import asyncio
import json
import traceback
from typing import Any

from procrastinate import JobContext, exceptions
from procrastinate.job_context import AbortReason
from procrastinate.middleware import AsyncCallNext
from procrastinate.worker import Worker

from taskservice.queries import query


def describe_error(exc: BaseException, context: JobContext) -> dict[str, Any]:
    """The error as clients see it: type, message and traceback."""
    if isinstance(exc, asyncio.CancelledError | exceptions.JobAborted):
        reason = context.abort_reason()
        message = (
            "worker shut down before the task finished; it will be retried"
            if reason == AbortReason.SHUTDOWN
            else "cancelled on request while running"
        )
        return {"type": "aborted", "message": message, "traceback": None}
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


async def _execute(worker: Worker, name: str, **params: Any) -> None:
    # Shielded: an abort cancels the task, but its outcome must still be written.
    await asyncio.shield(
        worker.app.connector.execute_query_async(query(name).psycopg_text, **params)
    )


async def record_outcome(call_next: AsyncCallNext, context: JobContext, worker: Worker) -> Any:
    """Run the job, then store its result or error.

    The record is written before Procrastinate marks the job finished, so a
    client that reads `completed` always finds the result there. Start and
    finish times are kept by triggers on the job's status."""
    job_id = context.job.id
    try:
        result = await call_next()
    except BaseException as exc:
        error = describe_error(exc, context)
        await _execute(worker, "record_task_failure", job_id=job_id, error=json.dumps(error))
        raise
    await _execute(worker, "record_task_success", job_id=job_id, result=json.dumps(result))
    return result
