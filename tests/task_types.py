"""Task types used only by the tests."""

from __future__ import annotations

import asyncio
import math
import os
import time
from typing import Any, Literal

from procrastinate import JobContext
from procrastinate.exceptions import JobAborted
from pydantic import BaseModel

from taskservice.registry import RetryPolicy, task_type


class WaitParams(BaseModel):
    seconds: float


@task_type("sync_wait", params=WaitParams, timeout_seconds=60)
def sync_wait(params: WaitParams, context: JobContext) -> str:
    """A sync task that honours abort requests, as the README tells task authors to."""
    deadline = time.monotonic() + params.seconds
    while time.monotonic() < deadline:
        if context.should_abort():
            raise JobAborted("stopped on request")
        time.sleep(0.05)
    return "done"


class NapParams(BaseModel):
    seconds: float


@task_type("nap", params=NapParams, timeout_seconds=5, retry=RetryPolicy(backoff_seconds=0.2))
async def nap(params: NapParams) -> str:
    """An async task with a 5 s time limit."""
    await asyncio.sleep(params.seconds)
    return "rested"


@task_type("flaky", params=NapParams, retry=RetryPolicy(max_attempts=3, backoff_seconds=0.5))
async def flaky(params: NapParams, context: JobContext) -> str:
    """Fails on its first run, succeeds on the next."""
    if context.job.attempts == 0:
        raise ConnectionError("first run always fails")
    return "ok"


@task_type(
    "picky",
    params=NapParams,
    retry=RetryPolicy(
        max_attempts=3, backoff_seconds=0.2, retry_on=(ConnectionError, TimeoutError)
    ),
)
async def picky(params: NapParams) -> str:
    """Sleeps; its type retries only ConnectionError and TimeoutError (README's example)."""
    await asyncio.sleep(params.seconds)
    return "rested"


class FailWithParams(BaseModel):
    message: str


@task_type(
    "picky_fail",
    params=FailWithParams,
    retry=RetryPolicy(max_attempts=2, backoff_seconds=0.2, retry_on=(ConnectionError,)),
)
async def picky_fail(params: FailWithParams) -> None:
    """Raises ConnectionError(message), with `{nul}` in it a NUL character."""
    raise ConnectionError(params.message.format(nul="\x00"))


# The table `recorded` writes to: one row per execution, so that tests can
# count repeats and overlaps. Tests create it (executions.create_table).
EXECUTIONS_TABLE = "test_executions"


class RecordedParams(BaseModel):
    seconds: float = 0.0
    # How it spends `seconds`: awaiting, blocking its thread (time.sleep in an
    # async function: the event loop stops too), or spinning the CPU.
    how: Literal["await", "block", "spin"] = "await"
    # What it returns: `nan` and `nul` are results jsonb cannot hold.
    result: Literal["pid", "nan", "nul"] = "pid"


@task_type("recorded", params=RecordedParams, retry=RetryPolicy(backoff_seconds=0.2))
async def recorded(params: RecordedParams, context: JobContext) -> Any:
    """Records its start and end (with the worker's pid) in test_executions."""
    connector = context.app.connector
    row = await connector.execute_query_one_async(
        f"INSERT INTO {EXECUTIONS_TABLE} (job_id, pid) VALUES (%(job_id)s, %(pid)s) RETURNING id",
        job_id=context.job.id,
        pid=os.getpid(),
    )
    try:
        if params.how == "await":
            await asyncio.sleep(params.seconds)
        elif params.how == "block":
            time.sleep(params.seconds)  # noqa: ASYNC251 - holding the event loop is the point
        else:
            deadline = time.monotonic() + params.seconds
            while time.monotonic() < deadline:
                pass
    finally:  # stopped (cancelled) runs end too: only a killed worker leaves a run open
        await asyncio.shield(
            connector.execute_query_async(
                f"UPDATE {EXECUTIONS_TABLE} SET finished_at = clock_timestamp() WHERE id = %(id)s",
                id=row["id"],
            )
        )
    if params.result == "nan":
        return {"x": math.nan}
    if params.result == "nul":
        return "a\x00b"
    return {"pid": os.getpid()}
