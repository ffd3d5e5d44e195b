"""The end of a run: status and result in one transaction, written by the run
that holds the job, through database blips; never a re-run for a result."""

from __future__ import annotations

import asyncpg
import httpx
import procrastinate
import pytest
from procrastinate.jobs import Job, Status

from taskservice.worker.failures import WorkerLost, describe_error
from taskservice.worker.runs import Outcome, end_run, end_run_for_sure
from tests.executions import executions_per_job
from tests.helpers import submit, wait_for_status

pytestmark = pytest.mark.usefixtures("executions")


async def _running_job(client: httpx.AsyncClient, queue_app: procrastinate.App) -> Job:
    """A task taken by a (pretend) worker, as Procrastinate's fetch leaves it."""
    await submit(client, type="echo", params={"value": 1})
    worker_id = await queue_app.job_manager.register_worker()
    job = await queue_app.job_manager.fetch_job(queues=None, worker_id=worker_id)
    assert job is not None
    return job


async def test_a_nan_result_fails_the_task_without_a_rerun(
    client: httpx.AsyncClient, worker: None, db: asyncpg.Connection
) -> None:
    await _refused_result(client, db, "nan")


async def test_a_nul_in_a_result_fails_the_task_without_a_rerun(
    client: httpx.AsyncClient, worker: None, db: asyncpg.Connection
) -> None:
    await _refused_result(client, db, "nul")


async def _refused_result(client: httpx.AsyncClient, db: asyncpg.Connection, refused: str) -> None:
    task = await submit(client, type="recorded", params={"result": refused})
    failed = await wait_for_status(client, task["id"], "failed", within=10)
    assert failed["error"]["type"] == "result_not_storable"
    assert failed["attempts"] == 1
    assert await executions_per_job(db) == {task["id"]: 1}


async def test_a_database_error_does_not_replace_the_tasks_exception(
    client: httpx.AsyncClient, worker: None
) -> None:
    """picky_fail retries ConnectionError only; its message holds a NUL, which the
    database cannot store. It is still retried, as a ConnectionError."""
    task = await submit(client, type="picky_fail", params={"message": "bad {nul} byte"})
    failed = await wait_for_status(client, task["id"], "failed", within=10)
    assert failed["attempts"] == 2
    assert [run["error"]["type"] for run in failed["attempt_history"]] == ["ConnectionError"] * 2


async def test_the_end_of_a_run_is_written_once_the_database_answers_again(
    client: httpx.AsyncClient, queue_app: procrastinate.App, db: asyncpg.Connection
) -> None:
    job = await _running_job(client, queue_app)
    # The pool's one connection dies under it, as in a database restart.
    await db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = 'taskservice-queue'"
    )
    assert isinstance(queue_app.connector, procrastinate.PsycopgConnector)
    ended = await end_run_for_sure(
        queue_app.connector,
        job,
        status=Status.SUCCEEDED,
        outcome=Outcome(result='{"ok": true}'),
        keep_trying_seconds=10,
    )
    assert ended
    task = (await client.get(f"/tasks/{job.id}")).json()
    assert (task["status"], task["result"], task["attempts"]) == ("completed", {"ok": True}, 1)


async def test_a_late_end_cannot_overwrite_a_rescued_run(
    client: httpx.AsyncClient, queue_app: procrastinate.App
) -> None:
    job = await _running_job(client, queue_app)
    connector = queue_app.connector
    assert isinstance(connector, procrastinate.PsycopgConnector)
    lost = Outcome(error=describe_error(WorkerLost("gone")), lost=True)
    assert await end_run(connector, job, status=Status.TODO, outcome=lost)
    # The first run's worker wakes up and reports success: refused.
    late = Outcome(result='"late"')
    assert not await end_run(connector, job, status=Status.SUCCEEDED, outcome=late)
    task = (await client.get(f"/tasks/{job.id}")).json()
    assert (task["status"], task["result"], task["attempts"]) == ("pending", None, 0)
    assert task["error"]["type"] == "worker_lost"
    # Fetched again, by the same worker even, it is a new run with its own end.
    assert job.worker_id is not None
    again = await queue_app.job_manager.fetch_job(queues=None, worker_id=job.worker_id)
    assert again is not None
    assert again.id == job.id
    assert not await end_run(connector, job, status=Status.SUCCEEDED, outcome=late)
    assert await end_run(connector, again, status=Status.SUCCEEDED, outcome=Outcome(result="1"))
    task = (await client.get(f"/tasks/{job.id}")).json()
    assert (task["status"], task["result"], task["attempts"]) == ("completed", 1, 1)
    assert [run["outcome"] for run in task["attempt_history"]] == ["retry", "succeeded"]
