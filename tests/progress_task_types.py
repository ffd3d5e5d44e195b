"""Task types of the progress tests (a registry of their own, so others' type lists stay put)."""

from __future__ import annotations

import asyncio
import time

from procrastinate import JobContext
from pydantic import BaseModel

from taskservice.registry import task_type
from taskservice.worker.progress import report_progress


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
