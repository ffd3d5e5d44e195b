"""Batched claims (the `claim_jobs` query, taskservice.claim_jobs_v1): several jobs in
one statement, with Procrastinate's order, locks and queue filter; and the worker
that uses them runs no more task functions at once than its concurrency, claiming
ahead of its slots only while its tasks are short."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import procrastinate

from taskservice.registry import TaskRegistry
from taskservice.settings import Settings
from taskservice.store import psycopg_driver as pg
from tests.conftest import running_worker
from tests.helpers import submit, wait_for_status
from tests.task_types import EXECUTIONS_TABLE

# The most task functions running at one instant, from the runs' own start and end.
MOST_RUNNING = (
    f"SELECT max(n) FROM (SELECT (SELECT count(*) FROM {EXECUTIONS_TABLE} AS b "
    "WHERE b.started_at <= a.started_at AND b.finished_at > a.started_at) AS n "
    f"FROM {EXECUTIONS_TABLE} AS a) AS concurrent"
)
# The most jobs held at one instant between their claim (Procrastinate's
# `started` event, written by the claim) and the end of their function.
MOST_HELD = (
    "WITH held AS (SELECT e.at AS claimed_at, x.finished_at "
    f"FROM procrastinate_events AS e JOIN {EXECUTIONS_TABLE} AS x USING (job_id) "
    "WHERE e.type = 'started') "
    "SELECT max(n) FROM (SELECT (SELECT count(*) FROM held AS b "
    "WHERE b.claimed_at <= a.claimed_at AND b.finished_at > a.claimed_at) AS n "
    "FROM held AS a) AS concurrent"
)


async def _defer(app: procrastinate.App, queue: str = "default", **options: Any) -> int:
    job_id: int = await app.configure_task("echo", queue=queue, **options).defer_async(value=1)
    return job_id


async def _claimed_ids(
    app: procrastinate.App, worker_id: int, limit: int, queues: list[str] | None = None
) -> set[int]:
    rows = await pg.fetch_all_cancellable(
        app.connector, "claim_jobs", queues=queues, worker_id=worker_id, limit=limit
    )
    return {row["id"] for row in rows}


async def test_a_claim_takes_the_highest_priorities_first_then_the_oldest(
    queue_app: procrastinate.App, db: asyncpg.Connection
) -> None:
    low = await _defer(queue_app, priority=0)
    high_old = await _defer(queue_app, priority=5)
    middle = await _defer(queue_app, priority=1)
    high_new = await _defer(queue_app, priority=5)
    worker_id = await queue_app.job_manager.register_worker()

    assert await _claimed_ids(queue_app, worker_id, 2) == {high_old, high_new}
    assert await _claimed_ids(queue_app, worker_id, 2) == {middle, low}
    assert await _claimed_ids(queue_app, worker_id, 2) == set()
    # Claimed as Procrastinate's fetch claims: doing, by this worker, `started`.
    rows = await db.fetch(
        "SELECT j.status::text, j.worker_id, "
        "count(e.id) FILTER (WHERE e.type = 'started') AS started "
        "FROM procrastinate_jobs AS j "
        "LEFT JOIN procrastinate_events AS e ON e.job_id = j.id "
        "GROUP BY j.id"
    )
    assert {tuple(row) for row in rows} == {("doing", worker_id, 1)}


async def test_a_claim_skips_jobs_whose_lock_is_held_or_queued_earlier(
    queue_app: procrastinate.App,
) -> None:
    first = await _defer(queue_app, lock="account-1")
    second = await _defer(queue_app, lock="account-1")
    free = await _defer(queue_app)
    other_lock = await _defer(queue_app, lock="account-2")
    worker_id = await queue_app.job_manager.register_worker()

    # Two jobs sharing a lock are never claimed together...
    assert await _claimed_ids(queue_app, worker_id, 10) == {first, free, other_lock}
    # ...nor while the first one runs.
    assert await _claimed_ids(queue_app, worker_id, 10) == set()
    job = await queue_app.job_manager.get_job_status_async(first)
    assert job.value == "doing"
    await pg.fetch_all_cancellable(
        queue_app.connector,
        "end_runs",
        runs=[
            {
                "job_id": first,
                "attempts": 0,
                "status": "succeeded",
                "retry_at": None,
                "uncharged": 0,
                "lost": 0,
                "result": "1",
                "error": None,
            }
        ],
    )
    assert await _claimed_ids(queue_app, worker_id, 10) == {second}


async def test_a_claim_takes_only_the_queues_asked_for_and_only_due_jobs(
    queue_app: procrastinate.App,
) -> None:
    mine = await _defer(queue_app, queue="mine")
    await _defer(queue_app, queue="theirs")
    await _defer(queue_app, queue="mine", schedule_in={"hours": 1})
    worker_id = await queue_app.job_manager.register_worker()

    assert await _claimed_ids(queue_app, worker_id, 10, queues=["mine"]) == {mine}
    assert len(await _claimed_ids(queue_app, worker_id, 10, queues=None)) == 1  # theirs


async def test_the_worker_runs_no_more_task_functions_at_once_than_its_concurrency(
    client: httpx.AsyncClient,
    worker: None,
    settings: Settings,
    db: asyncpg.Connection,
    executions: None,
) -> None:
    """Twelve 0.3 s runs at concurrency 4: claimed in batches, never more than
    four running at any instant (from the runs' own start and end), and, these
    tasks being long, none claimed ahead of a free slot."""
    tasks = [await submit(client, type="recorded", params={"seconds": 0.3}) for _ in range(12)]
    for task in tasks:
        await wait_for_status(client, task["id"], "completed", within=20)
    assert await db.fetchval(MOST_RUNNING) == settings.concurrency
    assert await db.fetchval(MOST_HELD) == settings.concurrency


async def test_with_short_tasks_the_worker_claims_ahead_and_still_runs_its_concurrency(
    client: httpx.AsyncClient,
    settings: Settings,
    registry: TaskRegistry,
    db: asyncpg.Connection,
    executions: None,
) -> None:
    """120 short runs queued before the worker starts, at concurrency 4: it holds
    more than four jobs at some instant (claimed while others ran), never runs
    more than four functions at once, and every job completes once."""
    response = await client.post(
        "/tasks/batch",
        json={"tasks": [{"type": "recorded", "params": {"seconds": 0}} for _ in range(120)]},
    )
    assert response.status_code == 201, response.text
    ids = response.json()["ids"]
    async with running_worker(settings, registry):
        await wait_for_status(client, ids[-1], "completed", within=30)
        for task_id in ids:
            await wait_for_status(client, task_id, "completed", within=10)
    assert await db.fetchval(f"SELECT count(*) FROM {EXECUTIONS_TABLE}") == len(ids)
    assert await db.fetchval(MOST_RUNNING) <= settings.concurrency
    assert await db.fetchval(MOST_HELD) > settings.concurrency


async def test_at_concurrency_one_short_tasks_are_claimed_and_run_in_order(
    client: httpx.AsyncClient,
    settings: Settings,
    registry: TaskRegistry,
    db: asyncpg.Connection,
    executions: None,
) -> None:
    """150 short runs queued, a worker of concurrency 1 claiming ahead: claimed
    (Procrastinate's `started` event) and run (the runs' own start) in the
    order they were queued, one claim ahead at a time."""
    response = await client.post(
        "/tasks/batch",
        json={"tasks": [{"type": "recorded", "params": {"seconds": 0}} for _ in range(150)]},
    )
    assert response.status_code == 201, response.text
    ids = response.json()["ids"]
    one_at_a_time = settings.model_copy(update={"concurrency": 1})
    async with running_worker(one_at_a_time, registry):
        for task_id in ids:
            await wait_for_status(client, task_id, "completed", within=30)
    claimed = await db.fetch(
        "SELECT job_id FROM procrastinate_events WHERE type = 'started' ORDER BY at, id"
    )
    ran = await db.fetch(f"SELECT job_id FROM {EXECUTIONS_TABLE} ORDER BY started_at")
    assert [row["job_id"] for row in claimed if row["job_id"] in ids] == ids
    assert [row["job_id"] for row in ran] == ids
    assert await db.fetchval(MOST_HELD) == 2  # it did claim ahead
