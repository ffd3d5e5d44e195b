"""batch.map when a worker is killed under it: its items are rescued, none is
deferred twice, and the batch.map still ends with every item counted."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from taskservice.settings import Settings
from tests.executions import ended_by_kill, overlaps
from tests.helpers import submit, wait_for_status
from tests.integration.faults.test_worker_faults import RESCUE
from tests.processes import worker_process

pytestmark = [pytest.mark.fault, pytest.mark.usefixtures("executions")]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The API checks a batch.map's items against the types the workers run.
    return settings.model_copy(update={"task_modules": ["tests.task_types"]})


async def test_a_worker_killed_under_a_batch_map(
    client: httpx.AsyncClient, database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    with (
        worker_process(database_url, tmp_path, concurrency=2, **RESCUE) as doomed,
        worker_process(database_url, tmp_path, concurrency=2, **RESCUE),
    ):
        parent = await submit(
            client,
            type="batch.map",
            params={"type": "recorded", "items": [{"seconds": 1}] * 6, "concurrency": 2},
        )
        deadline = time.monotonic() + 20
        while not await db.fetchval(
            "SELECT count(*) FROM test_executions WHERE pid = $1 AND finished_at IS NULL",
            doomed.pid,
        ):
            assert time.monotonic() < deadline, "the doomed worker never ran an item"
            await asyncio.sleep(0.05)
        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait(timeout=10)
        await ended_by_kill(db, doomed.pid)
        done = await wait_for_status(client, parent["id"], "completed", "failed", within=60)
    assert done["status"] == "completed", done
    assert (done["result"]["completed"], done["result"]["failed"]) == (6, 0)
    assert await db.fetchval("SELECT count(*) FROM taskservice.batches") == 1
    assert (
        await db.fetchval("SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'recorded'")
        == 6
    )
    assert await overlaps(db) == []
