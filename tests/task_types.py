"""Task types used only by the tests."""

from __future__ import annotations

import asyncio
import time

from procrastinate import JobContext
from procrastinate.exceptions import JobAborted
from pydantic import BaseModel

from taskservice.registry import RetryPolicy, task_type
from taskservice.worker.progress import report_progress


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


class ChattyParams(BaseModel):
    reports: int
    seconds: float


@task_type("chatty", params=ChattyParams)
async def chatty(params: ChattyParams, context: JobContext) -> int:
    """Reports progress far more often than the database should be written."""
    for i in range(1, params.reports + 1):
        report_progress(context, i / params.reports, f"step {i}")
        await asyncio.sleep(params.seconds / params.reports)
    return params.reports


@task_type("sync_chatty", params=ChattyParams)
def sync_chatty(params: ChattyParams, context: JobContext) -> int:
    """The same from a sync task, which runs in a thread."""
    for i in range(1, params.reports + 1):
        report_progress(context, i / params.reports, f"step {i}")
        time.sleep(params.seconds / params.reports)
    return params.reports
