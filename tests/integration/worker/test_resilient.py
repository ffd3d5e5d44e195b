"""A worker pruned while away (its heartbeat stale) registers again and keeps its
jobs; jobs a claim took although its answer was lost go back to the queue."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import asyncpg
import httpx
import procrastinate
import psycopg
import pytest
from procrastinate import BaseConnector
from procrastinate.jobs import Job, Status

from taskservice.registry import TaskRegistry
from taskservice.settings import Settings
from taskservice.store import psycopg_driver as pg
from taskservice.worker.failures import WorkerLost, describe_error
from taskservice.worker.runs import Outcome, end_run
from tests.conftest import running_worker
from tests.executions import executions_per_job
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


async def test_a_claim_whose_answer_is_lost_is_put_back_and_run_once(
    client: httpx.AsyncClient,
    settings: Settings,
    registry: TaskRegistry,
    database_url: str,
    db: asyncpg.Connection,
    executions: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The claim commits, then the connections die before its answer arrives
    (a database restart at the wrong moment): its job is `doing` under a worker
    that is alive and heartbeating, which must put it back and run it, once,
    as its first attempt; a job it runs meanwhile is left alone."""
    claim = pg.fetch_all_cancellable
    armed = False
    lost: list[int] = []

    async def claim_then_lose_the_answer(
        connector: BaseConnector, name: str, /, **params: Any
    ) -> list[dict[str, Any]]:
        rows = await claim(connector, name, **params)
        if (
            name == "claim_jobs"
            and armed
            and not lost
            and any(row["task_name"] == "recorded" for row in rows)
        ):
            lost.extend(row["id"] for row in rows)
            conn = await asyncpg.connect(database_url)
            try:
                await conn.execute(  # test-only SQL
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() "
                    "AND application_name = 'taskservice-queue'"
                )
            finally:
                await conn.close()
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return rows

    monkeypatch.setattr(pg, "fetch_all_cancellable", claim_then_lose_the_answer)
    caplog.set_level(logging.WARNING, logger="taskservice.worker.resilient")
    async with running_worker(settings, registry):
        running = await submit(client, type="recorded", params={"seconds": 2})
        await wait_for_status(client, running["id"], "in_progress")
        armed = True
        orphan = await submit(client, type="recorded", params={"seconds": 0})
        done = await wait_for_status(client, orphan["id"], "completed", within=10)
        assert orphan["id"] in lost
        assert done["attempts"] == 1
        assert [(run["attempt"], run["outcome"]) for run in done["attempt_history"]] == [
            (1, "succeeded")
        ]
        finished = await wait_for_status(client, running["id"], "completed", within=10)
        assert finished["attempts"] == 1
    assert await executions_per_job(db) == {orphan["id"]: 1, running["id"]: 1}
    assert "released 1 jobs claimed for worker" in caplog.text


async def _claim(app: procrastinate.App, worker_id: int) -> Job:
    rows = await pg.fetch_all_cancellable(
        app.connector, "claim_jobs", queues=None, worker_id=worker_id, limit=1
    )
    assert len(rows) == 1
    return Job.from_row(rows[0])


async def test_orphans_go_back_as_they_were_before_their_claim(
    client: httpx.AsyncClient, queue_app: procrastinate.App
) -> None:
    """The release itself: only this worker's `doing` jobs that it does not
    run; no attempt charged, no run shown; one asked to stop is cancelled."""
    mine = await queue_app.job_manager.register_worker()
    other = await queue_app.job_manager.register_worker()
    ids: dict[str, int] = {}
    claimed: dict[str, Job] = {}
    for name in ("theirs", "running", "orphan", "stopped", "rerun"):
        ids[name] = (await submit(client, type="echo", params={"value": 1}))["id"]
        claimed[name] = await _claim(queue_app, other if name == "theirs" else mine)
        assert claimed[name].id == ids[name]
    # `rerun` had a run before, lost with its worker (as the rescue ends it).
    connector = queue_app.connector
    assert isinstance(connector, procrastinate.PsycopgConnector)
    lost = Outcome(error=describe_error(WorkerLost("gone")), lost=True)
    assert await end_run(connector, claimed["rerun"], status=Status.TODO, outcome=lost)
    before = (await client.get(f"/tasks/{ids['rerun']}")).json()
    assert (await _claim(queue_app, mine)).id == ids["rerun"]
    assert (await client.delete(f"/tasks/{ids['stopped']}")).status_code == 202

    released = await pg.fetch_all(
        connector, "release_orphaned_jobs", worker_id=mine, running=[ids["running"]]
    )

    assert [row["id"] for row in released] == sorted([ids["orphan"], ids["stopped"], ids["rerun"]])
    tasks = {name: (await client.get(f"/tasks/{ids[name]}")).json() for name in ids}
    assert tasks["theirs"]["status"] == tasks["running"]["status"] == "in_progress"
    orphan = tasks["orphan"]
    assert (orphan["status"], orphan["attempts"], orphan["attempt_history"]) == ("pending", 0, [])
    assert (orphan["started_at"], orphan["finished_at"]) == (None, None)
    stopped = tasks["stopped"]
    assert (stopped["status"], stopped["attempts"], stopped["attempt_history"]) == (
        "cancelled",
        0,
        [],
    )
    rerun = tasks["rerun"]
    assert (rerun["status"], rerun["attempt_history"]) == ("pending", before["attempt_history"])
    assert rerun["started_at"] == before["started_at"]
    # Claimed again, its run is the first, as it would have been.
    again = await _claim(queue_app, mine)
    assert (again.id, again.attempts) == (ids["orphan"], 0)
    task = (await client.get(f"/tasks/{ids['orphan']}")).json()
    assert [run["attempt"] for run in task["attempt_history"]] == [1]
