"""Workers killed, frozen, stopped, or held by their own task: nothing lost, nothing
run twice at once, no attempt charged to a task for its worker's fate."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from taskservice.registry import TaskRegistry
from taskservice.settings import Settings
from tests.conftest import running_worker
from tests.executions import ended_by_kill, executions_per_job, overlaps
from tests.helpers import submit, wait_for_status
from tests.processes import worker_process

# The `recorded` task type writes each execution to the executions table.
pytestmark = [pytest.mark.fault, pytest.mark.usefixtures("executions")]

# A little slack over tests.processes.FAST_RESCUE: the machine is shared.
RESCUE: dict[str, Any] = {
    "worker_heartbeat_seconds": 0.5,
    "stalled_after_seconds": 3.0,
    "rescue_interval_seconds": 1,
}
# stalled-after + rescue interval + poll, plus a second for a busy machine.
RESCUE_BOUND = 3.0 + 1 + 0.2 + 1


async def _statuses(db: asyncpg.Connection) -> dict[str, int]:
    rows = await db.fetch(
        "SELECT status, count(*) AS n FROM taskservice.tasks WHERE NOT internal GROUP BY status"
    )
    return {row["status"]: row["n"] for row in rows}


async def _wait_all_completed(db: asyncpg.Connection, total: int, within: float) -> float:
    """Seconds until `total` tasks are completed; fails after `within`."""
    start = time.monotonic()
    while True:
        statuses = await _statuses(db)
        if statuses.get("completed", 0) == total:
            return time.monotonic() - start
        assert time.monotonic() - start < within, statuses
        await asyncio.sleep(0.2)


async def _pid_running_tasks(db: asyncpg.Connection, pid: int) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM test_executions WHERE pid = $1 AND finished_at IS NULL", pid
        )
    )


async def test_kill_one_of_three_workers_under_100_tasks(
    client: httpx.AsyncClient, database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """(3) kill -9 one of three workers while 100 one-second tasks run."""
    with (
        worker_process(database_url, tmp_path, concurrency=4, **RESCUE) as doomed,
        worker_process(database_url, tmp_path, concurrency=4, **RESCUE),
        worker_process(database_url, tmp_path, concurrency=4, **RESCUE),
    ):
        tasks = await asyncio.gather(
            *(submit(client, type="recorded", params={"seconds": 1}) for _ in range(100))
        )
        deadline = time.monotonic() + 20
        while await _pid_running_tasks(db, doomed.pid) < 2:
            assert time.monotonic() < deadline, "the doomed worker never ran two tasks"
            await asyncio.sleep(0.05)
        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait(timeout=10)
        killed_at = time.monotonic()
        await ended_by_kill(db, doomed.pid)
        # 100 s of work on 8 slots left, plus the rescue of the killed worker's tasks.
        took = await _wait_all_completed(db, len(tasks), within=60)
    print(f"all 100 completed {took:.1f} s after the kill")
    assert time.monotonic() - killed_at < 60
    assert (await _statuses(db)) == {"completed": 100}
    assert await overlaps(db) == []
    runs = await executions_per_job(db)
    assert set(runs) == {t["id"] for t in tasks}
    repeated = [job for job, n in runs.items() if n > 1]
    assert 1 <= len(repeated) <= 4  # the killed worker's tasks, and only those
    for job in repeated:
        done = (await client.get(f"/tasks/{job}")).json()
        assert done["attempts"] == 1
        assert done["attempt_history"][0]["error"]["type"] == "worker_lost"


async def test_a_frozen_worker_cannot_overwrite_the_rescued_run(
    client: httpx.AsyncClient, database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """(4) SIGSTOP a worker past the stall timeout, let its task be rescued and
    finished by another, SIGCONT it: its late end changes nothing."""
    with worker_process(database_url, tmp_path, **RESCUE) as frozen:
        task = await submit(client, type="recorded", params={"seconds": 2})
        await wait_for_status(client, task["id"], "in_progress", within=15)
        frozen.process.send_signal(signal.SIGSTOP)
        try:
            with worker_process(database_url, tmp_path, **RESCUE) as rescuer:
                done = await wait_for_status(client, task["id"], "completed", within=20)
                frozen.process.send_signal(signal.SIGCONT)
                # The frozen run's sleep is long over: it ends at once, and is refused.
                deadline = time.monotonic() + 10
                while await _pid_running_tasks(db, frozen.pid):
                    assert time.monotonic() < deadline, "the frozen run never ended"
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1)
                after = (await client.get(f"/tasks/{task['id']}")).json()
        finally:
            frozen.process.send_signal(signal.SIGCONT)
    assert done["result"] == {"pid": rescuer.pid}
    assert after == done
    assert [run["outcome"] for run in after["attempt_history"]] == ["retry", "succeeded"]
    assert after["attempts"] == 1
    assert await executions_per_job(db) == {task["id"]: 2}


async def test_a_task_holding_the_event_loop_is_not_taken_for_a_dead_worker(
    client: httpx.AsyncClient,
    settings: Settings,
    registry: TaskRegistry,
    database_url: str,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    """(5) A task that blocks its thread (time.sleep in an async function) or spins
    the CPU for longer than the stall timeout: its worker's heartbeats go on."""
    hold = RESCUE["stalled_after_seconds"] + 2
    tasks = [
        await submit(client, type="recorded", params={"seconds": hold, "how": how})
        for how in ("block", "spin")
    ]
    # A rescuer that runs only the service's own jobs.
    rescuer = settings.model_copy(update={**RESCUE, "queues": ["none"]})
    async with running_worker(rescuer, registry):
        with worker_process(database_url, tmp_path, concurrency=2, **RESCUE):
            for task in tasks:
                done = await wait_for_status(client, task["id"], "completed", within=30)
                assert len(done["attempt_history"]) == 1, done
    assert await executions_per_job(db) == {t["id"]: 1 for t in tasks}


async def test_sigterm_under_load_hands_back_without_charging_attempts(
    client: httpx.AsyncClient, database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """(6) SIGTERM a worker under load: it claims nothing after the signal; its
    running tasks finish or are handed back within the grace period; none is
    left in progress or charged an attempt."""
    grace = 2.0
    long = [await submit(client, type="recorded", params={"seconds": 6}) for _ in range(6)]
    short = await asyncio.gather(
        *(submit(client, type="recorded", params={"seconds": 0.3}) for _ in range(30))
    )
    with (
        worker_process(
            database_url, tmp_path, concurrency=4, shutdown_grace_seconds=grace, **RESCUE
        ) as stopped,
        worker_process(database_url, tmp_path, concurrency=4, **RESCUE),
    ):
        deadline = time.monotonic() + 20
        while await _pid_running_tasks(db, stopped.pid) < 2:
            assert time.monotonic() < deadline, "the stopped worker never ran two tasks"
            await asyncio.sleep(0.05)
        signalled_at = await db.fetchval("SELECT clock_timestamp()")
        stopped.process.send_signal(signal.SIGTERM)
        start = time.monotonic()
        stopped.process.wait(timeout=grace + 10)
        exited_after = time.monotonic() - start
        assert stopped.process.returncode == 0
        in_progress_on_stopped = await _pid_running_tasks(db, stopped.pid)
        took = await _wait_all_completed(db, len(long) + len(short), within=60)
    print(f"stopped worker exited {exited_after:.1f} s after SIGTERM; all done {took:.1f} s on")
    assert exited_after < grace + 3
    late_claims = await db.fetchval(
        "SELECT count(*) FROM test_executions "
        "WHERE pid = $1 AND started_at > $2::timestamptz + interval '0.1 s'",
        stopped.pid,
        signalled_at,
    )
    assert late_claims == 0
    assert in_progress_on_stopped == 0  # each of its runs finished or was stopped
    assert await overlaps(db) == []
    handed_back = 0
    for task in [*long, *short]:
        done = (await client.get(f"/tasks/{task['id']}")).json()
        assert done["attempts"] == 1, done
        if len(done["attempt_history"]) > 1:
            handed_back += 1
            assert done["attempt_history"][0]["error"]["type"] == "worker_shutdown"
    assert handed_back >= 1  # the long tasks it held went back to the queue
