"""The API's request and response shapes (TaskCreate, TaskPublic, TasksPublic, ...)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from taskservice.models.fields import PG_BIGINT_MAX as PG_BIGINT_MAX
from taskservice.models.fields import PG_INT_MAX as PG_INT_MAX
from taskservice.models.fields import (
    CanonicalInt,
    Moment,
    Seconds,
    StorableText,
    check_storable,
)
from taskservice.registry import INTERNAL_PRIORITY

# A task's attempts in all; each type has its own (lower) limit.
MAX_ATTEMPTS = 1_000

# Clients stay below the service's own jobs (INTERNAL_PRIORITY).
MAX_PRIORITY = INTERNAL_PRIORITY - 1

# Procrastinate notifies workers on channel "procrastinate_queue_v1#<queue>", and
# PostgreSQL channel names stop at 63 bytes.
QueueName = Annotated[
    str,
    Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.\-]+$", examples=["default"]),
]


class TaskStatus(StrEnum):
    """A task's status; taskservice.status_names maps Procrastinate's onto these."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


# The other way round, for filters: which of Procrastinate's statuses each one
# covers. The same as the taskservice.status_names table (a test compares them),
# kept here too so that the listing knows when a status is one of Procrastinate's
# (sql/queries.sql, list_tasks: then its index gives the page's order).
PROCRASTINATE_STATUSES: dict[TaskStatus, tuple[str, ...]] = {
    TaskStatus.PENDING: ("todo",),
    TaskStatus.IN_PROGRESS: ("doing", "aborting"),
    TaskStatus.COMPLETED: ("succeeded",),
    TaskStatus.FAILED: ("failed",),
    TaskStatus.CANCELLED: ("cancelled", "aborted"),
}


class TaskCreate(BaseModel):
    """A submission: which task type to run, with which params, where and when."""

    model_config = ConfigDict(extra="forbid")

    type: StorableText = Field(min_length=1, max_length=200, examples=["echo"])
    params: dict[str, Any] = Field(
        default_factory=dict,
        examples=[{"value": 42}],
        description="Checked against the type's params schema: see GET /task-types.",
    )
    priority: int = Field(
        default=0, strict=True, ge=-PG_INT_MAX, le=MAX_PRIORITY, description="Higher runs first."
    )
    queue: QueueName | None = Field(default=None, description="Defaults to `default`.")
    run_at: Moment | None = Field(
        default=None, description="Run no earlier than this (timezone required); past is now."
    )
    delay_seconds: Seconds | None = Field(
        default=None, ge=0, description="Run this long from now (not with run_at)."
    )
    max_attempts: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=MAX_ATTEMPTS,
        description="Runs in all, first included; default and limit per type.",
    )
    backoff_seconds: Seconds | None = Field(
        default=None, ge=0, description="First wait between attempts; the type's policy grows it."
    )
    timeout_seconds: Seconds | None = Field(
        default=None, gt=0, description="Time limit of a run; at most the type's own limit."
    )
    unique_key: StorableText | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="At most one pending task per key; a second is refused with 409.",
    )
    callback_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2000,
        description="POSTed the task (signed) when it ends; its host must be allowed.",
    )

    @model_validator(mode="after")
    def _one_start_time(self) -> TaskCreate:
        if self.run_at is not None and self.delay_seconds is not None:
            raise ValueError("give run_at or delay_seconds, not both")
        return self

    @field_validator("params")
    @classmethod
    def _params_storable(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_storable(value)
        return value


class TaskError(BaseModel):
    type: str
    message: str
    traceback: str | None = None
    details: dict[str, Any] | None = Field(
        default=None,
        description="What the task type kept about the failure (the HTTP response of "
        "http.request, say); absent for most errors.",
    )


class TaskAttempt(BaseModel):
    """One run of a task."""

    attempt: int
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None = Field(
        description="succeeded, failed, aborted, or retry (failed, another attempt follows)."
    )
    error: TaskError | None


class TaskProgress(BaseModel):
    """Progress as a task function reported it (rate-limited)."""

    fraction: float | None = Field(default=None, description="Between 0 and 1.")
    message: str | None = None
    updated_at: datetime


class CallbackState(BaseModel):
    """The completion webhook's delivery: pending, delivered, retrying or failed."""

    status: str
    attempts: int
    last_error: str | None = None


class TaskPublic(BaseModel):
    """A task as clients see it."""

    id: int
    type: str
    params: dict[str, Any]
    status: TaskStatus
    priority: int
    queue: str
    unique_key: str | None
    attempts: int = Field(description="Runs finished so far.")
    max_attempts: int | None
    timeout_seconds: float | None
    abort_requested: bool
    created_at: datetime | None
    scheduled_at: datetime | None
    next_attempt_at: datetime | None = Field(description="Set while waiting to be retried.")
    started_at: datetime | None
    finished_at: datetime | None
    result: Any = None
    error: TaskError | None = Field(default=None, description="The last run's error.")
    attempt_history: list[TaskAttempt] | None = Field(
        default=None, description="Every run; only on GET /tasks/{id}."
    )
    progress: TaskProgress | None = Field(
        default=None, description="What the task last reported of its progress."
    )
    batch_id: int | None = None
    callback: CallbackState | None = Field(
        default=None, description="Delivery of the completion webhook, if it has one."
    )


class TasksPublic(BaseModel):
    """One page of tasks, newest first; pass `next_cursor` as `cursor` for the next."""

    items: list[TaskPublic]
    next_cursor: str | None


class TaskFilters(BaseModel):
    """What `GET /tasks` filters and pages by; an unknown parameter is refused."""

    model_config = ConfigDict(extra="forbid")

    status: TaskStatus | None = None
    type: StorableText | None = Field(default=None, max_length=200)
    queue: StorableText | None = Field(default=None, max_length=200)
    created_after: Moment | None = Field(default=None, description="RFC 3339, with a time zone.")
    created_before: Moment | None = Field(default=None, description="RFC 3339, with a time zone.")
    limit: CanonicalInt = Field(default=50, ge=1, le=500)
    cursor: str | None = Field(default=None, pattern=r"^[1-9][0-9]{0,17}$")
    batch_id: int | None = Field(default=None, ge=1, le=PG_BIGINT_MAX)


class QueuePublic(BaseModel):
    """One queue: its tasks per status and the wait of its oldest due pending task."""

    queue: str
    pending: int
    in_progress: int
    completed: int
    failed: int
    cancelled: int
    oldest_pending_seconds: float | None


class Health(BaseModel):
    status: str = Field(description="`ok`, or `unavailable` when the service cannot work.")
    database: bool
    schema_current: bool
    missing_migrations: list[str]
    workers: int = Field(
        description="Workers whose heartbeat is younger than the stall timeout "
        "(TASKSERVICE_STALLED_AFTER_SECONDS): those that would not be rescued."
    )
    reason: str | None = Field(
        default=None, description="Why the service is not ready; null when it is."
    )
