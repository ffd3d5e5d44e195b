"""Procrastinate retry strategy: a task type's policy, with the job's own overrides."""

from __future__ import annotations

import datetime
from typing import Any

import pydantic
from procrastinate import BaseRetryStrategy, RetryDecision
from procrastinate.exceptions import JobAborted
from procrastinate.jobs import Job

from taskservice.registry import RetryPolicy, TaskType

# Per-submission settings travel in the job's args under this key, because a
# retry decision is taken from the job row alone (Procrastinate has no per-job
# retry setting). The tasks view hides it from `params`.
OPTIONS_KEY = "_options"

# Bad parameters fail the same way on every attempt.
_NEVER_RETRIED: tuple[type[BaseException], ...] = (pydantic.ValidationError,)


class WorkerShutdown(Exception):
    """The run was stopped because its worker shut down: not the task's fault."""


class WorkerLost(Exception):
    """The run's worker stopped sending heartbeats (killed, or its machine died)."""


def job_options(job: Job) -> dict[str, Any]:
    """The service's per-submission settings stored with a job (may be empty)."""
    options = job.task_kwargs.get(OPTIONS_KEY)
    return options if isinstance(options, dict) else {}


def options_for(
    task: TaskType,
    *,
    max_attempts: int | None = None,
    backoff_seconds: float | None = None,
    timeout_seconds: float | None = None,
) -> dict[str, Any]:
    """The settings a job of `task` carries under OPTIONS_KEY: the type's
    defaults, replaced by what a submission asked for."""
    options: dict[str, Any] = {"max_attempts": max_attempts or task.retry.max_attempts}
    if backoff_seconds is not None:
        options["backoff_seconds"] = backoff_seconds
    timeout = timeout_seconds or task.timeout_seconds
    if timeout is not None:
        options["timeout_seconds"] = timeout
    return options


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class ServiceRetryStrategy(BaseRetryStrategy):
    """Retry per the type's RetryPolicy; `max_attempts` and `backoff_seconds`
    may be set per job. A run cut short by a worker shutdown is always retried,
    at once: Procrastinate only asks about aborts when they come from a shutdown."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if isinstance(exception, WorkerShutdown | JobAborted):
            return RetryDecision(retry_at=_now())
        options = job_options(job)
        max_attempts = options.get("max_attempts", self.policy.max_attempts)
        attempt = job.attempts + 1  # Procrastinate counts attempts before this one.
        if not isinstance(max_attempts, int) or attempt >= max_attempts:
            return None
        if isinstance(exception, _NEVER_RETRIED) or not isinstance(exception, self.policy.retry_on):
            return None
        backoff = options.get("backoff_seconds")
        wait = self.policy.wait_after(
            attempt, float(backoff) if isinstance(backoff, int | float) else None
        )
        return RetryDecision(retry_at=_now() + datetime.timedelta(seconds=wait))
