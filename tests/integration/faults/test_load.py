"""(8) Two APIs and three workers, 2,000 tasks, no fault: every task completes, once."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.executions import executions_per_job, overlaps
from tests.processes import FAST_RESCUE, service_env, service_process, worker_process

# The `recorded` task type writes each execution to the executions table.
pytestmark = [pytest.mark.fault, pytest.mark.usefixtures("executions")]

TASKS = 2_000
CLIENTS = 16


async def test_two_apis_three_workers_2000_tasks_each_run_once(
    database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    with (
        service_process("api", service_env(database_url), tmp_path) as api1,
        service_process("api", service_env(database_url), tmp_path) as api2,
        worker_process(database_url, tmp_path, concurrency=8, **FAST_RESCUE),
        worker_process(database_url, tmp_path, concurrency=8, **FAST_RESCUE),
        worker_process(database_url, tmp_path, concurrency=8, **FAST_RESCUE),
    ):
        bases = itertools.cycle([api1.base, api2.base])
        ids: list[int] = []
        start = time.monotonic()

        async def submitter(base: str, count: int) -> None:
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                for _ in range(count):
                    answer = await http.post("/tasks", json={"type": "recorded", "params": {}})
                    assert answer.status_code == 201, answer.text
                    ids.append(answer.json()["id"])

        await asyncio.gather(*(submitter(next(bases), TASKS // CLIENTS) for _ in range(CLIENTS)))
        submitted = time.monotonic() - start
        while True:
            done = await db.fetchval(
                "SELECT count(*) FROM taskservice.tasks WHERE type = 'recorded' "
                "AND status = 'completed'"
            )
            if done == TASKS:
                break
            assert time.monotonic() - start < 120, f"{done} of {TASKS} completed"
            await asyncio.sleep(0.5)
        took = time.monotonic() - start
    print(f"{TASKS} tasks: submitted in {submitted:.1f} s, all completed in {took:.1f} s")
    assert len(set(ids)) == TASKS
    assert await executions_per_job(db) == dict.fromkeys(ids, 1)
    assert await overlaps(db) == []
    charged = await db.fetchval(
        "SELECT count(*) FROM taskservice.tasks WHERE type = 'recorded' AND attempts <> 1"
    )
    assert charged == 0
