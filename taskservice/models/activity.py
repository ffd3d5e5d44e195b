"""What the service has been doing: its workers, and tasks finished per minute."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class WorkerPublic(BaseModel):
    """A registered worker and how recently it sent a heartbeat."""

    id: int
    last_heartbeat: datetime
    heartbeat_age_seconds: float
    alive: bool = Field(description="Heartbeat recent enough (the same bound as /health).")
    running: int = Field(description="Tasks it is running now.")
    hostname: str | None = Field(default=None, description="The machine it runs on.")
    pid: int | None = None
    queues: list[str] | None = Field(
        default=None, description="The queues it serves; null: every queue."
    )
    concurrency: int | None = Field(default=None, description="Tasks it runs at once.")


class ThroughputMinute(BaseModel):
    """Tasks that ended in one minute (the minute's start)."""

    minute: datetime
    completed: int
    failed: int


class ThroughputPublic(BaseModel):
    """Tasks completed and failed per minute, oldest minute first, the current one last."""

    minutes: list[ThroughputMinute]
