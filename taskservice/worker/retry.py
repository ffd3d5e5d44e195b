"""Procrastinate retry strategy: a task type's policy, with the job's own overrides."""

from __future__ import annotations

import datetime

import pydantic
from procrastinate import BaseRetryStrategy, RetryDecision
from procrastinate.exceptions import JobAborted
from procrastinate.jobs import Job

from taskservice.errors import ParamRefused
from taskservice.job_options import job_options, uncharged_runs
from taskservice.registry import RetryPolicy
from taskservice.worker.failures import DoNotRetry, RetryLater, WorkerShutdown

# Bad or refused parameters fail the same way on every attempt.
_NEVER_RETRIED: tuple[type[BaseException], ...] = (
    pydantic.ValidationError,
    ParamRefused,
    DoNotRetry,
)


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
        # Procrastinate counts every run before this one; those stopped by a lost
        # or stopped worker are not the task's to pay for.
        attempt = job.attempts + 1 - uncharged_runs(job)
        if not isinstance(max_attempts, int) or attempt >= max_attempts:
            return None
        if isinstance(exception, _NEVER_RETRIED) or not isinstance(exception, self.policy.retry_on):
            return None
        backoff = options.get("backoff_seconds")
        wait = self.policy.wait_after(
            attempt, float(backoff) if isinstance(backoff, int | float) else None
        )
        if isinstance(exception, RetryLater) and exception.retry_after is not None:
            # The server said when to come back (Retry-After): not sooner, but
            # never past the policy's longest wait.
            wait = min(max(wait, exception.retry_after), self.policy.max_backoff_seconds)
        return RetryDecision(retry_at=_now() + datetime.timedelta(seconds=wait))
