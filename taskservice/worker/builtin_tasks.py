"""The task types every deployment has: echo, sleep and fail."""

from __future__ import annotations

import asyncio
from typing import Any

from procrastinate import JobContext
from pydantic import BaseModel, ConfigDict, Field

from taskservice.registry import RetryPolicy, task_type
from taskservice.worker.progress import MIN_INTERVAL_SECONDS, report_progress


class EchoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: Any = Field(description="Any JSON value; it becomes the result.")


class SleepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0, le=86_400, description="How long to sleep.")


class FailParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str = Field(default="failed on purpose", max_length=10_000)


class IntentionalFailure(Exception):
    """Raised by the `fail` task type."""


@task_type("echo", params=EchoParams)
async def echo(params: EchoParams) -> Any:
    """Return `value` unchanged: a probe for the whole submit-run-read path."""
    return params.value


# How many progress reports `sleep` makes at most (the writes are rate-limited anyway).
_SLEEP_STEPS = 20


@task_type("sleep", params=SleepParams)
async def sleep(params: SleepParams, context: JobContext) -> dict[str, float]:
    """Sleep for `seconds`, reporting progress as it goes; cancelling the task
    stops it at once."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    step = max(params.seconds / _SLEEP_STEPS, MIN_INTERVAL_SECONDS)
    while (elapsed := loop.time() - start) < params.seconds:
        report_progress(
            context, elapsed / params.seconds, f"slept {elapsed:.1f}s of {params.seconds:g}s"
        )
        await asyncio.sleep(min(step, params.seconds - elapsed))
    report_progress(context, 1.0, f"slept {params.seconds:g}s")
    return {"slept": params.seconds}


@task_type(
    "fail",
    params=FailParams,
    retry=RetryPolicy(max_attempts=3, backoff_seconds=1.0, backoff_factor=2.0),
)
async def fail(params: FailParams) -> None:
    """Always raise, with `message`: for checking retries and alerting."""
    raise IntentionalFailure(params.message)
