"""What a worker logs per job: failures and retries always, successes only with
TASKSERVICE_LOG_SUCCESSES (every outcome is in the database either way)."""

from __future__ import annotations

import logging

import httpx
import pytest

from taskservice.registry import TaskRegistry
from taskservice.settings import Settings
from tests.conftest import running_worker
from tests.helpers import submit, wait_for_status


def _job_lines(caplog: pytest.LogCaptureFixture, task_id: int) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name.startswith("procrastinate.worker")
        and isinstance(getattr(record, "job", None), dict)
        and record.job["id"] == task_id  # type: ignore[attr-defined]  # set by the worker
        and record.levelno >= logging.INFO
    ]


async def _run_one_success_and_one_failure(
    client: httpx.AsyncClient,
    settings: Settings,
    registry: TaskRegistry,
    caplog: pytest.LogCaptureFixture,
    log_successes: bool,
) -> None:
    caplog.set_level(logging.INFO)
    settings = settings.model_copy(update={"log_successes": log_successes})
    async with running_worker(settings, registry):
        done = await submit(client, type="echo", params={"value": 1})
        failed = await submit(client, type="fail", params={"message": "boom"}, max_attempts=1)
        await wait_for_status(client, done["id"], "completed")
        await wait_for_status(client, failed["id"], "failed")

    successes = _job_lines(caplog, done["id"])
    assert len(successes) == (1 if log_successes else 0)
    if log_successes:
        assert "ended with status: Success" in successes[0].getMessage()
    (failure,) = _job_lines(caplog, failed["id"])
    assert failure.levelno == logging.ERROR
    assert "ended with status: Error" in failure.getMessage()


async def test_successes_are_not_logged_by_default_failures_are(
    client: httpx.AsyncClient,
    settings: Settings,
    registry: TaskRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await _run_one_success_and_one_failure(client, settings, registry, caplog, False)


async def test_successes_are_logged_when_asked(
    client: httpx.AsyncClient,
    settings: Settings,
    registry: TaskRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await _run_one_success_and_one_failure(client, settings, registry, caplog, True)
