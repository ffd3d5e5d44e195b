"""report_progress: visible on the task, rate-limited, the last value always written."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import asyncpg
import httpx
import pytest

from taskservice.registry import TaskRegistry, load_registry
from taskservice.settings import Settings
from taskservice.worker.progress import MIN_INTERVAL_SECONDS
from tests.conftest import running_worker
from tests.helpers import submit, wait_for_status


@pytest.fixture
def registry() -> TaskRegistry:
    return load_registry(["tests.task_types", "tests.progress_task_types"])


async def test_sleep_reports_progress_while_it_runs(
    client: httpx.AsyncClient, settings: Settings, registry: TaskRegistry
) -> None:
    task = await submit(client, type="sleep", params={"seconds": 3})
    assert task["progress"] is None
    async with running_worker(settings, registry):
        running = await wait_for_status(client, task["id"], "in_progress")
        while running["progress"] is None or running["progress"]["fraction"] == 0:
            running = (await client.get(f"/tasks/{task['id']}")).json()
            await asyncio.sleep(0.1)
        assert running["status"] == "in_progress"
        assert 0 < running["progress"]["fraction"] < 1
        assert running["progress"]["message"].startswith("slept")
        assert running["progress"]["updated_at"] is not None
        done = await wait_for_status(client, task["id"], "completed")
    assert done["progress"]["fraction"] == 1.0


async def _check_rate_limited(
    client: httpx.AsyncClient,
    settings: Settings,
    registry: TaskRegistry,
    database_url: str,
    task_type: str,
) -> None:
    writes: list[dict[str, Any]] = []
    listener = await asyncpg.connect(database_url)

    def collect(*args: Any) -> None:
        event = json.loads(args[3])
        if event["kind"] == "progress":
            writes.append(event["progress"])

    await listener.add_listener("taskservice_events", collect)
    try:
        seconds = 1.5
        task = await submit(client, type=task_type, params={"reports": 1000, "seconds": seconds})
        async with running_worker(settings, registry):
            done = await wait_for_status(client, task["id"], "completed", within=30)
        await asyncio.sleep(0.2)  # the last notifications
    finally:
        await listener.close()
    # 1,000 reports, but one write per interval of the run (which a busy
    # machine stretches), plus the first and the last.
    ran = dt.datetime.fromisoformat(done["finished_at"]) - dt.datetime.fromisoformat(
        done["started_at"]
    )
    assert 2 <= len(writes) <= ran.total_seconds() / MIN_INTERVAL_SECONDS + 2, len(writes)
    assert len(writes) < 50  # of 1,000 reports
    assert writes[-1]["fraction"] == 1.0
    assert done["progress"]["message"] == "step 1000"


async def test_progress_writes_are_rate_limited_and_the_last_is_kept(
    client: httpx.AsyncClient, settings: Settings, registry: TaskRegistry, database_url: str
) -> None:
    await _check_rate_limited(client, settings, registry, database_url, "chatty")


async def test_sync_tasks_report_progress_the_same_way(
    client: httpx.AsyncClient, settings: Settings, registry: TaskRegistry, database_url: str
) -> None:
    await _check_rate_limited(client, settings, registry, database_url, "sync_chatty")
