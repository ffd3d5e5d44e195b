"""`taskservice worker --processes N`: N workers under one parent, stopped together."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import asyncpg
import httpx

from tests.helpers import submit, wait_for_status
from tests.processes import service_env, service_process


async def _worker_pids(db: asyncpg.Connection, count: int, within: float) -> set[int]:
    deadline = time.monotonic() + within
    while True:
        pids = {row["pid"] for row in await db.fetch("SELECT pid FROM taskservice.worker_details")}
        if len(pids) >= count or time.monotonic() > deadline:
            return pids
        await asyncio.sleep(0.2)


async def test_each_process_is_a_worker_and_sigterm_stops_them_all_gracefully(
    client: httpx.AsyncClient, database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    env = service_env(database_url, shutdown_grace_seconds=10.0)
    with service_process(
        "worker", env, tmp_path, "--processes", "2", "--concurrency", "2"
    ) as parent:
        pids = await _worker_pids(db, 2, within=30)
        assert len(pids) == 2
        assert parent.pid not in pids
        tasks = [await submit(client, type="echo", params={"value": n}) for n in range(20)]
        for task in tasks:
            await wait_for_status(client, task["id"], "completed", within=20)
        running = await submit(client, type="sleep", params={"seconds": 1.5})
        await wait_for_status(client, running["id"], "in_progress", within=10)
        parent.process.send_signal(signal.SIGTERM)
        # The running task ends within the grace: stopped gracefully, not killed.
        assert parent.process.wait(timeout=30) == 0
    finished = await wait_for_status(client, running["id"], "completed", within=1)
    assert finished["attempts"] == 1
    assert await db.fetchval("SELECT count(*) FROM procrastinate_workers") == 0


def test_fewer_than_one_process_is_refused(tmp_path: Path) -> None:
    env = service_env("postgresql://127.0.0.1:1/none")
    with service_process("worker", env, tmp_path, "--processes", "0") as parent:
        assert parent.process.wait(timeout=30) == 2
    assert "--processes: must be a whole number of at least 1" in parent.log.read_text()
