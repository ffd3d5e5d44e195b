"""The task types every deployment has: echo, sleep and fail."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from taskservice.registry import RetryPolicy, task_type


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


@task_type("sleep", params=SleepParams)
async def sleep(params: SleepParams) -> dict[str, float]:
    """Sleep for `seconds`; cancelling the task stops it at once."""
    await asyncio.sleep(params.seconds)
    return {"slept": params.seconds}


@task_type(
    "fail",
    params=FailParams,
    retry=RetryPolicy(max_attempts=3, backoff_seconds=1.0, backoff_factor=2.0),
)
async def fail(params: FailParams) -> None:
    """Always raise, with `message`: for checking retries and alerting."""
    raise IntentionalFailure(params.message)
