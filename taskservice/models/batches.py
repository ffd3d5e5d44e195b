"""Batch shapes: BatchCreate (POST /tasks/batch), BatchCreated and BatchPublic."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from taskservice.models.tasks import CallbackState, TaskCreate

MAX_BATCH_SIZE = 1000


class BatchCreate(BaseModel):
    """Up to 1,000 tasks, stored together or not at all."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[TaskCreate] = Field(min_length=1, max_length=MAX_BATCH_SIZE)
    callback_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2000,
        description="POSTed the batch (signed) once its last task ends.",
    )


class BatchCreated(BaseModel):
    batch_id: int
    ids: list[int] = Field(description="The tasks' ids, in the order given.")


class BatchPublic(BaseModel):
    """A batch: its tasks per status, and whether all have ended."""

    id: int
    created_at: datetime
    total: int
    pending: int
    in_progress: int
    completed: int
    failed: int
    cancelled: int
    done: bool
    done_at: datetime | None
    callback: CallbackState | None = None
    parent_id: int | None = Field(
        default=None, description="The batch.map task whose items these are, if one made it."
    )
