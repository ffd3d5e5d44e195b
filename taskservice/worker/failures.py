"""Why a run stopped other than by its own exception, and how an error is shown to clients."""

from __future__ import annotations

import asyncio
import traceback
from typing import Any

from procrastinate import exceptions
from procrastinate.job_context import AbortReason


class WorkerShutdown(Exception):
    """The run was stopped because its worker shut down: not the task's fault."""


class WorkerLost(Exception):
    """The run's worker stopped sending heartbeats (killed, or its machine died)."""


class ResultNotStorable(Exception):
    """The run succeeded but its result could not be stored (the database
    refused it: NaN, or text with a NUL character). Never retried: the task
    ran, and running it again would repeat its side effects."""


class DoNotRetry(Exception):
    """Raised by a task for a failure another attempt cannot fix (a 4xx answer,
    a refused destination): the task fails at once, whatever its retry policy.
    `details` (JSON-able) is kept in the task's error for the client."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details


class RetryLater(Exception):
    """Raised by a task for a failure worth another attempt (a 5xx, a 429, a lost
    connection). `retry_after` (seconds, from a Retry-After answer) makes the next
    attempt wait at least that long, within the policy's longest backoff; `details`
    (JSON-able) is kept in the task's error if no attempt is left."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.details = details


class TaskTimeout(Exception):
    """A run went past its time limit; it counts as a failed attempt."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"ran longer than its time limit of {seconds:g} s")
        self.seconds = seconds


def _storable(text: str) -> str:
    """`text` without NUL, which PostgreSQL text and jsonb cannot hold."""
    return text.replace("\x00", "\ufffd")


def describe_error(exc: BaseException, abort_reason: AbortReason | None = None) -> dict[str, Any]:
    """The error as clients see it: type, message and traceback.

    The service's own stop reasons get short type names (`timeout`, `aborted`,
    `worker_shutdown`, `worker_lost`, `result_not_storable`); a task's exception
    keeps its class name."""
    stopped = isinstance(exc, asyncio.CancelledError | exceptions.JobAborted)
    if isinstance(exc, WorkerShutdown) or (stopped and abort_reason == AbortReason.SHUTDOWN):
        kind, message = "worker_shutdown", "its worker shut down mid-run; it will run again"
    elif stopped:
        kind, message = "aborted", "cancelled on request while running"
    elif isinstance(exc, TaskTimeout):
        kind, message = "timeout", str(exc)
    elif isinstance(exc, WorkerLost):
        kind, message = "worker_lost", str(exc)
    elif isinstance(exc, ResultNotStorable):
        kind, message = (
            "result_not_storable",
            f"the run succeeded but its result was refused: {exc}",
        )
    else:
        error: dict[str, Any] = {
            "type": type(exc).__name__,
            "message": _storable(str(exc)),
            "traceback": _storable("".join(traceback.format_exception(exc))),
        }
        details = getattr(exc, "details", None)
        if isinstance(exc, DoNotRetry | RetryLater) and details is not None:
            error["details"] = details
        return error
    return {"type": kind, "message": message, "traceback": None}
