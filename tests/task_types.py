"""Task types used only by the tests."""

from __future__ import annotations

import time

from procrastinate import JobContext
from procrastinate.exceptions import JobAborted
from pydantic import BaseModel

from taskservice.registry import task_type


class WaitParams(BaseModel):
    seconds: float


@task_type("sync_wait", params=WaitParams)
def sync_wait(params: WaitParams, context: JobContext) -> str:
    """A sync task that honours abort requests, as the README tells task authors to."""
    deadline = time.monotonic() + params.seconds
    while time.monotonic() < deadline:
        if context.should_abort():
            raise JobAborted("stopped on request")
        time.sleep(0.05)
    return "done"
