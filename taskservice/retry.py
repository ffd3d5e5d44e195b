"""Procrastinate retry strategy that honours a task type's policy and the job's own max_attempts."""

from __future__ import annotations

import datetime
from typing import Any

import pydantic
from procrastinate import BaseRetryStrategy, RetryDecision
from procrastinate.jobs import Job

from taskservice.registry import RetryPolicy

# Per-submission settings travel in the job's args under this key, because a
# retry decision is taken from the job row alone (Procrastinate has no per-job
# retry setting). The tasks view hides it from `params`.
OPTIONS_KEY = "_options"

# Bad parameters fail the same way on every attempt.
_NEVER_RETRIED: tuple[type[BaseException], ...] = (pydantic.ValidationError,)


def job_options(job: Job) -> dict[str, Any]:
    """The service's per-submission settings stored with a job (may be empty)."""
    options = job.task_kwargs.get(OPTIONS_KEY)
    return options if isinstance(options, dict) else {}


class ServiceRetryStrategy(BaseRetryStrategy):
    """Retry per the type's RetryPolicy; `max_attempts` may be set per job."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        max_attempts = job_options(job).get("max_attempts", self.policy.max_attempts)
        attempt = job.attempts + 1  # Procrastinate counts attempts before this one.
        if not isinstance(max_attempts, int) or attempt >= max_attempts:
            return None
        if isinstance(exception, _NEVER_RETRIED) or not isinstance(exception, self.policy.retry_on):
            return None
        wait = datetime.timedelta(seconds=self.policy.wait_after(attempt))
        return RetryDecision(retry_at=datetime.datetime.now(datetime.UTC) + wait)
