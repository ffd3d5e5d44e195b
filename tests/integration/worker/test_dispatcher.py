"""The dispatcher: each due run deferred exactly once, whatever the number of workers."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools

import asyncpg
import httpx
import procrastinate

from taskservice.registry import TaskRegistry
from taskservice.settings import Settings
from taskservice.worker.dispatcher import dispatch_due
from tests.conftest import running_worker


async def test_two_workers_defer_each_second_once(
    client: httpx.AsyncClient, settings: Settings, registry: TaskRegistry, db: asyncpg.Connection
) -> None:
    created = await client.post(
        "/scheduler/jobs",
        json={
            "name": "every-second",
            "type": "echo",
            "params": {"value": 1},
            "cron": "* * * * * *",
        },
    )
    schedule_id = created.json()["id"]
    async with running_worker(settings, registry), running_worker(settings, registry):
        await asyncio.sleep(13)
        await client.post(f"/scheduler/jobs/{schedule_id}/pause")
        await asyncio.sleep(1)  # let the last runs finish
    runs = await db.fetch(
        "SELECT r.due_at, r.job_id, j.status::text AS status "
        "FROM taskservice.schedule_runs r JOIN procrastinate_jobs j ON j.id = r.job_id "
        "WHERE r.schedule_id = $1 ORDER BY r.due_at",
        schedule_id,
    )
    jobs = await db.fetchval("SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'echo'")
    due = [row["due_at"] for row in runs]
    assert len(due) >= 10
    assert all(b - a == dt.timedelta(seconds=1) for a, b in itertools.pairwise(due)), due
    assert jobs == len(runs)  # no run deferred twice
    assert {row["status"] for row in runs} <= {"succeeded", "doing", "todo"}
    assert sum(row["status"] == "succeeded" for row in runs) >= len(runs) - 2


async def test_missed_runs_with_catch_up_once_run_once(
    client: httpx.AsyncClient,
    queue_app: procrastinate.App,
    registry: TaskRegistry,
    db: asyncpg.Connection,
) -> None:
    await _missed_runs(client, queue_app, registry, db, catch_up="once", expected_runs=1)


async def test_missed_runs_with_catch_up_skip_are_skipped(
    client: httpx.AsyncClient,
    queue_app: procrastinate.App,
    registry: TaskRegistry,
    db: asyncpg.Connection,
) -> None:
    await _missed_runs(client, queue_app, registry, db, catch_up="skip", expected_runs=0)


async def _missed_runs(
    client: httpx.AsyncClient,
    queue_app: procrastinate.App,
    registry: TaskRegistry,
    db: asyncpg.Connection,
    *,
    catch_up: str,
    expected_runs: int,
) -> None:
    created = await client.post(
        "/scheduler/jobs",
        json={
            "name": "hourly",
            "type": "echo",
            "params": {"value": 1},
            # Hourly at half an hour from now: no run is near "on time" during the test.
            "cron": f"{(dt.datetime.now(dt.UTC).minute + 30) % 60} * * * *",
            "catch_up": catch_up,
        },
    )
    schedule = created.json()
    schedule_id = schedule["id"]
    # Five hourly runs went by with no worker.
    await db.execute(
        "UPDATE taskservice.schedules SET next_run_at = $2 WHERE id = $1",
        schedule_id,
        datetime_of(schedule["next_run_at"]) - dt.timedelta(hours=6),
    )
    assert isinstance(queue_app.connector, procrastinate.PsycopgConnector)
    await dispatch_due(queue_app.connector, registry)
    await dispatch_due(queue_app.connector, registry)  # a second dispatcher finds nothing
    runs = await db.fetchval(
        "SELECT count(*) FROM taskservice.schedule_runs WHERE schedule_id = $1", schedule_id
    )
    assert runs == expected_runs
    schedule = (await client.get(f"/scheduler/jobs/{schedule_id}")).json()
    assert datetime_of(schedule["next_run_at"]) > dt.datetime.now(dt.UTC)


async def test_a_due_run_found_again_is_not_deferred_twice(
    client: httpx.AsyncClient,
    queue_app: procrastinate.App,
    registry: TaskRegistry,
    db: asyncpg.Connection,
) -> None:
    """The (schedule, due time) key alone makes dispatch exactly once: with the
    schedule's next_run_at set back to a due time already dispatched, a second
    dispatch defers nothing."""
    created = await client.post(
        "/scheduler/jobs",
        json={"name": "hourly", "type": "echo", "params": {"value": 1}, "cron": "0 * * * *"},
    )
    schedule_id = created.json()["id"]
    due_at = await db.fetchval("SELECT date_trunc('hour', now())")
    set_back = "UPDATE taskservice.schedules SET next_run_at = $2 WHERE id = $1"
    await db.execute(set_back, schedule_id, due_at)
    assert isinstance(queue_app.connector, procrastinate.PsycopgConnector)
    assert await dispatch_due(queue_app.connector, registry) == 1
    await db.execute(set_back, schedule_id, due_at)
    assert await dispatch_due(queue_app.connector, registry) == 0
    jobs = await db.fetchval("SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'echo'")
    runs = await db.fetch(
        "SELECT due_at, job_id FROM taskservice.schedule_runs WHERE schedule_id = $1", schedule_id
    )
    assert jobs == 1
    assert [(r["due_at"], r["job_id"] is not None) for r in runs] == [(due_at, True)]


def datetime_of(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


async def test_cleanup_prunes_old_finished_tasks_only(
    client: httpx.AsyncClient, worker: None, db: asyncpg.Connection
) -> None:
    from tests.helpers import submit, wait_for_status

    old = await submit(client, type="echo", params={"value": "old"})
    recent = await submit(client, type="echo", params={"value": "recent"})
    waiting = await submit(client, type="echo", params={"value": 1}, delay_seconds=3600)
    for task in (old, recent):
        await wait_for_status(client, task["id"], "completed")
    await db.execute(
        "UPDATE taskservice.task_records SET finished_at = now() - interval '8 days' "
        "WHERE job_id = $1",
        old["id"],
    )
    schedules = (await client.get("/scheduler/jobs")).json()["schedules"]
    [cleanup] = [s for s in schedules if s["name"] == "taskservice.cleanup"]
    await db.execute(
        "INSERT INTO taskservice.schedule_runs (schedule_id, due_at, deferred_at) "
        "VALUES ($1, now() - interval '9 days', now() - interval '9 days')",
        cleanup["id"],
    )
    run = (await client.post(f"/scheduler/jobs/{cleanup['id']}/run")).json()
    done = await wait_for_status(client, run["id"], "completed")
    assert done["result"]["deleted_tasks"] == 1
    assert done["result"]["deleted_schedule_runs"] == 1  # the old one, not today's
    assert (await client.get(f"/tasks/{old['id']}")).status_code == 404
    assert (await client.get(f"/tasks/{recent['id']}")).status_code == 200
    assert (await client.get(f"/tasks/{waiting['id']}")).status_code == 200
    events = await db.fetchval(
        "SELECT count(*) FROM procrastinate_events WHERE job_id = $1", old["id"]
    )
    assert events == 0
