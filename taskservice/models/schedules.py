"""The scheduler API's shapes: ScheduleCreate, ScheduleUpdate, SchedulePublic and lists."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from taskservice.models.tasks import MAX_PRIORITY, PG_INT_MAX, QueueName, TaskPublic, check_storable
from taskservice.timing import CatchUp, check_cron, check_timezone


class _Timing(BaseModel):
    @field_validator("cron", check_fields=False)
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else check_cron(value)

    @field_validator("timezone", check_fields=False)
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return None if value is None else check_timezone(value)

    @field_validator("params", check_fields=False)
    @classmethod
    def _params(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            check_storable(value)
        return value


class ScheduleCreate(_Timing):
    """Run `type` with `params` by `cron` (in `timezone`) or every `interval_seconds`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["nightly-report"])
    type: str = Field(min_length=1, max_length=200, examples=["echo"])
    params: dict[str, Any] = Field(default_factory=dict)
    cron: str | None = Field(
        default=None, examples=["30 2 * * *"], description="5 fields, or 6 with seconds last."
    )
    interval_seconds: float | None = Field(default=None, ge=1, le=366 * 86_400)
    timezone: str = Field(default="UTC", examples=["Europe/Paris"])
    priority: int = Field(default=0, ge=-PG_INT_MAX, le=MAX_PRIORITY)
    queue: QueueName = "default"
    enabled: bool = True
    catch_up: CatchUp = Field(
        default="once", description="Runs missed while no worker ran: `once` or `skip`."
    )
    callback_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2000,
        description="Each run's task is POSTed there (signed) when it ends.",
    )

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.startswith("taskservice."):
            raise ValueError("names starting with 'taskservice.' are the service's own")
        return value

    @model_validator(mode="after")
    def _one_timing(self) -> ScheduleCreate:
        if (self.cron is None) == (self.interval_seconds is None):
            raise ValueError("give cron or interval_seconds, exactly one")
        return self


class ScheduleUpdate(_Timing):
    """Fields to change; giving `cron` drops `interval_seconds`, and the other way round."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] | None = None
    cron: str | None = None
    interval_seconds: float | None = Field(default=None, ge=1, le=366 * 86_400)
    timezone: str | None = None
    priority: int | None = Field(default=None, ge=-PG_INT_MAX, le=MAX_PRIORITY)
    queue: QueueName | None = None
    enabled: bool | None = None
    catch_up: CatchUp | None = None
    callback_url: str | None = Field(default=None, min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _at_most_one_timing(self) -> ScheduleUpdate:
        if self.cron is not None and self.interval_seconds is not None:
            raise ValueError("give cron or interval_seconds, not both")
        return self


class SchedulePublic(BaseModel):
    """A schedule as clients see it, with its run history in brief."""

    id: int
    name: str
    source: Literal["api", "code"] = Field(
        description="`code`: declared in a task module; read-only but pausable."
    )
    type: str
    params: dict[str, Any]
    cron: str | None
    interval_seconds: float | None
    timezone: str
    priority: int
    queue: str
    enabled: bool
    catch_up: CatchUp
    next_run_at: datetime
    last_run_at: datetime | None
    last_task_id: int | None
    last_task_status: str | None
    completed_runs: int
    failed_runs: int
    created_at: datetime
    updated_at: datetime
    callback_url: str | None = None


class ScheduledJobsPublic(BaseModel):
    """Everything that will run: schedules, and (with include=one_off) single future tasks."""

    schedules: list[SchedulePublic]
    one_off: list[TaskPublic] | None = None
