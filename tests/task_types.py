"""Task types used only by the tests."""

from __future__ import annotations

import asyncio
import time

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
