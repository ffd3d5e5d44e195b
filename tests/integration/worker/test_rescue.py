"""No task is left in progress when a worker dies (SIGKILL) or is stopped (SIGTERM)."""

from __future__ import annotations

import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import httpx

from taskservice.registry import TaskRegistry
from taskservice.settings import Settings
from tests.conftest import running_worker
from tests.helpers import submit, wait_for_status
from tests.processes import FAST_RESCUE, worker_process


def _exit_within(process: subprocess.Popen[bytes], seconds: float) -> float:
    start = time.monotonic()
    process.wait(timeout=seconds)
    return time.monotonic() - start


async def test_task_of_a_killed_worker_is_finished_by_another(
    client: httpx.AsyncClient,
    settings: Settings,
    registry: TaskRegistry,
    database_url: str,
    tmp_path: Path,
) -> None:
    with worker_process(database_url, tmp_path, **FAST_RESCUE) as doomed:
        task = await submit(client, type="sleep", params={"seconds": 2})
        await wait_for_status(client, task["id"], "in_progress", within=15)
        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait(timeout=10)
    killed_at = datetime.now().astimezone()

    async with running_worker(settings.model_copy(update=FAST_RESCUE), registry):
        done = await wait_for_status(client, task["id"], "completed", within=20)
    assert done["attempts"] == 1  # a lost worker is not the task's fault
    first, second = done["attempt_history"]
    assert first["outcome"] == "retry"
    assert first["error"]["type"] == "worker_lost"
    rescued_after = (datetime.fromisoformat(second["started_at"]) - killed_at).total_seconds()
    # stalled after 2 s, rescue every 1 s, polling every 0.2 s: well under 5 s
    assert rescued_after < 5, rescued_after


async def test_sigterm_lets_a_short_task_finish(
    client: httpx.AsyncClient, database_url: str, tmp_path: Path
) -> None:
    with worker_process(database_url, tmp_path, shutdown_grace_seconds=10, **FAST_RESCUE) as worker:
        task = await submit(client, type="sleep", params={"seconds": 1})
        await wait_for_status(client, task["id"], "in_progress", within=15)
        worker.process.send_signal(signal.SIGTERM)
        _exit_within(worker.process, 15)
    done = await wait_for_status(client, task["id"], "completed", within=1)
    assert done["attempts"] == 1


async def test_sigterm_past_the_grace_period_puts_tasks_back_in_the_queue(
    client: httpx.AsyncClient, database_url: str, tmp_path: Path
) -> None:
    with worker_process(
        database_url, tmp_path, shutdown_grace_seconds=0.5, **FAST_RESCUE
    ) as worker:
        tasks = [
            await submit(client, type="sleep", params={"seconds": 60}, max_attempts=1),
            await submit(client, type="sync_wait", params={"seconds": 60}, max_attempts=1),
        ]
        for task in tasks:
            await wait_for_status(client, task["id"], "in_progress", within=15)
        worker.process.send_signal(signal.SIGTERM)
        assert _exit_within(worker.process, 15) < 5
    for task in tasks:
        back = (await client.get(f"/tasks/{task['id']}")).json()
        assert back["status"] == "pending", back
        assert back["attempts"] == 0  # a stopped worker is not the task's fault
        assert back["error"]["type"] == "worker_shutdown"
        assert back["attempt_history"][0]["outcome"] == "retry"


async def test_a_killed_worker_does_not_use_up_attempts_or_hit_retry_on(
    client: httpx.AsyncClient,
    settings: Settings,
    registry: TaskRegistry,
    database_url: str,
    tmp_path: Path,
) -> None:
    """`picky` retries only ConnectionError and TimeoutError, and the task may
    run once: a lost worker is neither, and is not an attempt, so it runs again."""
    with worker_process(database_url, tmp_path, **FAST_RESCUE) as doomed:
        task = await submit(client, type="picky", params={"seconds": 1}, max_attempts=1)
        await wait_for_status(client, task["id"], "in_progress", within=15)
        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait(timeout=10)
    async with running_worker(settings.model_copy(update=FAST_RESCUE), registry):
        done = await wait_for_status(client, task["id"], "completed", within=20)
    assert done["attempts"] == 1
    assert [run["outcome"] for run in done["attempt_history"]] == ["retry", "succeeded"]


async def test_a_task_that_loses_its_worker_too_often_fails_as_worker_lost(
    client: httpx.AsyncClient,
    settings: Settings,
    registry: TaskRegistry,
    database_url: str,
    tmp_path: Path,
) -> None:
    """With max_worker_losses 1, the first kill -9 under a max_attempts 1 task fails it."""
    with worker_process(database_url, tmp_path, max_worker_losses=1, **FAST_RESCUE) as doomed:
        task = await submit(client, type="sleep", params={"seconds": 30}, max_attempts=1)
        await wait_for_status(client, task["id"], "in_progress", within=15)
        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait(timeout=10)
    rescuer = settings.model_copy(update={**FAST_RESCUE, "max_worker_losses": 1})
    async with running_worker(rescuer, registry):
        failed = await wait_for_status(client, task["id"], "failed", within=20)
    assert failed["error"]["type"] == "worker_lost"
    assert failed["attempts"] == 1
    [run] = failed["attempt_history"]
    assert (run["outcome"], run["error"]["type"]) == ("failed", "worker_lost")
