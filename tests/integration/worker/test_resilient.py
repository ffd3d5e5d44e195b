"""A worker pruned while away (its heartbeat stale) registers again and keeps its jobs."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx

from taskservice.registry import TaskRegistry
from taskservice.settings import Settings
from tests.conftest import running_worker
from tests.helpers import submit, wait_for_status


async def _registered_owner(database_url: str, job_id: int) -> int | None:
    conn = await asyncpg.connect(database_url)
    try:
        owner: int | None = await conn.fetchval(  # test-only SQL
            "SELECT w.id FROM procrastinate_jobs j "
            "JOIN procrastinate_workers w ON w.id = j.worker_id WHERE j.id = $1",
            job_id,
        )
        return owner
    finally:
        await conn.close()


async def test_pruned_worker_registers_again_and_keeps_its_running_job(
    client: httpx.AsyncClient, settings: Settings, registry: TaskRegistry, database_url: str
) -> None:
    fast = settings.model_copy(update={"worker_heartbeat_seconds": 0.2})
    async with running_worker(fast, registry):
        task = await submit(client, type="nap", params={"seconds": 2})
        await wait_for_status(client, task["id"], "in_progress")
        # What another worker's start-up prune does to a worker silent too long.
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("DELETE FROM procrastinate_workers")  # test-only SQL
        finally:
            await conn.close()
        deadline = time.monotonic() + 3
        while await _registered_owner(database_url, task["id"]) is None:
            assert time.monotonic() < deadline, "the running job has no registered worker"
            await asyncio.sleep(0.1)
        finished = await wait_for_status(client, task["id"], "completed")
        assert finished["attempts"] == 1
        # And it goes on claiming under its new id.
        later = await submit(client, type="echo", params={"value": 2})
        await wait_for_status(client, later["id"], "completed")
