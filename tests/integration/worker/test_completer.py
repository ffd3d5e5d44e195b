"""Batched run ends (worker/completer.py): several ends in one statement, each
acknowledged only once committed, and only by the run that still holds its job."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import procrastinate
import pytest
from procrastinate.jobs import Job, Status

from taskservice.worker.completer import BatchCompleter
from taskservice.worker.failures import WorkerLost, describe_error
from taskservice.worker.runs import Outcome, end_run
from tests.helpers import submit


@pytest.fixture
def completer(queue_app: procrastinate.App) -> BatchCompleter:
    assert isinstance(queue_app.connector, procrastinate.PsycopgConnector)
    return BatchCompleter(queue_app.connector, keep_trying_seconds=5)


async def _running_jobs(
    client: httpx.AsyncClient, queue_app: procrastinate.App, count: int
) -> list[Job]:
    """Tasks taken by a (pretend) worker, as a fetch leaves them."""
    for value in range(count):
        await submit(client, type="echo", params={"value": value})
    worker_id = await queue_app.job_manager.register_worker()
    jobs = []
    for _ in range(count):
        job = await queue_app.job_manager.fetch_job(queues=None, worker_id=worker_id)
        assert job is not None
        jobs.append(job)
    return jobs


async def test_ends_that_arrive_together_are_written_in_one_batch(
    client: httpx.AsyncClient, queue_app: procrastinate.App, completer: BatchCompleter
) -> None:
    jobs = await _running_jobs(client, queue_app, 5)
    latencies: list[float | None] = []
    ended = await asyncio.gather(
        *(
            completer.end_run(
                job,
                status=Status.SUCCEEDED,
                outcome=Outcome(result=str(job.id), on_written=latencies.append),
            )
            for job in jobs
        )
    )
    assert ended == [True] * 5
    assert completer.batches == 1
    assert len(latencies) == 5
    assert all(v is not None and v >= 0 for v in latencies)
    for job in jobs:
        task = (await client.get(f"/tasks/{job.id}")).json()
        assert (task["status"], task["result"], task["attempts"]) == ("completed", job.id, 1)
        assert [run["outcome"] for run in task["attempt_history"]] == ["succeeded"]


async def test_an_end_is_acknowledged_only_once_committed(
    client: httpx.AsyncClient,
    queue_app: procrastinate.App,
    completer: BatchCompleter,
    database_url: str,
) -> None:
    (job,) = await _running_jobs(client, queue_app, 1)
    blocker = await asyncpg.connect(database_url)
    try:
        # Another transaction holds the job's row: the end cannot commit yet.
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("SELECT 1 FROM procrastinate_jobs WHERE id = $1 FOR UPDATE", job.id)
        ending = asyncio.create_task(
            completer.end_run(job, status=Status.SUCCEEDED, outcome=Outcome(result="1"))
        )
        await asyncio.sleep(0.5)
        assert not ending.done()
        await transaction.rollback()
        assert await asyncio.wait_for(ending, 10)
        # Acknowledged: any other session reads the end.
        status = await blocker.fetchval(
            "SELECT status::text FROM procrastinate_jobs WHERE id = $1", job.id
        )
        assert status == "succeeded"
    finally:
        await blocker.close()


async def test_a_run_that_lost_its_job_cannot_end_it_and_does_not_spoil_its_batch(
    client: httpx.AsyncClient, queue_app: procrastinate.App, completer: BatchCompleter
) -> None:
    lost_job, other = await _running_jobs(client, queue_app, 2)
    connector = queue_app.connector
    assert isinstance(connector, procrastinate.PsycopgConnector)
    # The rescue ends the first run (its worker was lost): the job waits again.
    lost = Outcome(error=describe_error(WorkerLost("gone")), lost=True)
    assert await end_run(connector, lost_job, status=Status.TODO, outcome=lost)
    # Its first worker wakes up and reports success, beside another run's end.
    late, fine = await asyncio.gather(
        completer.end_run(lost_job, status=Status.SUCCEEDED, outcome=Outcome(result='"late"')),
        completer.end_run(other, status=Status.SUCCEEDED, outcome=Outcome(result='"fine"')),
    )
    assert (late, fine) == (False, True)
    assert completer.batches == 1
    task = (await client.get(f"/tasks/{lost_job.id}")).json()
    assert (task["status"], task["result"], task["attempts"]) == ("pending", None, 0)
    assert task["error"]["type"] == "worker_lost"
    task = (await client.get(f"/tasks/{other.id}")).json()
    assert (task["status"], task["result"]) == ("completed", "fine")


async def test_a_result_the_database_refuses_fails_its_run_only(
    client: httpx.AsyncClient, queue_app: procrastinate.App, completer: BatchCompleter
) -> None:
    refused, fine = await _running_jobs(client, queue_app, 2)
    ended = await asyncio.gather(
        completer.end_run(refused, status=Status.SUCCEEDED, outcome=Outcome(result="NaN")),
        completer.end_run(fine, status=Status.SUCCEEDED, outcome=Outcome(result="2")),
    )
    assert list(ended) == [True, True]
    task = (await client.get(f"/tasks/{refused.id}")).json()
    assert (task["status"], task["error"]["type"]) == ("failed", "result_not_storable")
    task = (await client.get(f"/tasks/{fine.id}")).json()
    assert (task["status"], task["result"]) == ("completed", 2)


async def test_ends_are_written_once_the_database_answers_again(
    client: httpx.AsyncClient,
    queue_app: procrastinate.App,
    completer: BatchCompleter,
    db: asyncpg.Connection,
) -> None:
    jobs = await _running_jobs(client, queue_app, 3)
    # The pool's connections die under it, as in a database restart.
    await db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = 'taskservice-queue'"
    )
    ended = await asyncio.gather(
        *(
            completer.end_run(job, status=Status.SUCCEEDED, outcome=Outcome(result="3"))
            for job in jobs
        )
    )
    assert ended == [True] * 3
    for job in jobs:
        task = (await client.get(f"/tasks/{job.id}")).json()
        assert (task["status"], task["result"], task["attempts"]) == ("completed", 3, 1)
