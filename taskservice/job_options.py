"""Per-submission settings (attempts, backoff, time limit) carried in a job's args."""

from __future__ import annotations

from typing import Any

from procrastinate.jobs import Job

from taskservice.registry import TaskType

# Per-submission settings travel in the job's args under this key, because a
# retry decision is taken from the job row alone (Procrastinate has no per-job
# retry setting). The tasks view hides it from `params`.
OPTIONS_KEY = "_options"


def job_options(job: Job) -> dict[str, Any]:
    """The service's per-submission settings stored with a job (may be empty)."""
    options = job.task_kwargs.get(OPTIONS_KEY)
    return options if isinstance(options, dict) else {}


def uncharged_runs(job: Job) -> int:
    """Runs of `job` ended by a lost or stopped worker: not counted against max_attempts."""
    runs = job_options(job).get("uncharged_runs", 0)
    return runs if isinstance(runs, int) else 0


def lost_runs(job: Job) -> int:
    """Runs of `job` whose worker was lost (killed, stalled): capped by max_worker_losses."""
    runs = job_options(job).get("lost_runs", 0)
    return runs if isinstance(runs, int) else 0


def options_for(
    task: TaskType,
    *,
    max_attempts: int | None = None,
    backoff_seconds: float | None = None,
    timeout_seconds: float | None = None,
    owner: int | None = None,
) -> dict[str, Any]:
    """The settings a job of `task` carries under OPTIONS_KEY: the type's
    defaults, replaced by what a submission asked for; and the id of the API key
    it belongs to (copied into its record by the insert trigger)."""
    options: dict[str, Any] = {"max_attempts": max_attempts or task.retry.max_attempts}
    if owner is not None:
        options["owner"] = owner
    if backoff_seconds is not None:
        options["backoff_seconds"] = backoff_seconds
    timeout = timeout_seconds or task.timeout_seconds
    if timeout is not None:
        options["timeout_seconds"] = timeout
    return options
