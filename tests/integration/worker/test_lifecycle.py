"""Tasks run by the real worker: status transitions, results, errors, cancel, abort, order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from taskservice.registry import TaskRegistry
from taskservice.settings import Settings
from tests.conftest import running_worker
from tests.helpers import submit, wait_for_status


async def test_echo_completes_with_its_result(client: httpx.AsyncClient, worker: None) -> None:
    task = await submit(client, type="echo", params={"value": 42})
    done = await wait_for_status(client, task["id"], "completed")
    assert done["result"] == 42
    assert done["error"] is None
    assert done["attempts"] == 1
    assert done["created_at"] <= done["started_at"] <= done["finished_at"]


async def test_pending_then_in_progress_then_completed(
    client: httpx.AsyncClient, worker: None
) -> None:
    task = await submit(client, type="sleep", params={"seconds": 0.6})
    assert task["status"] in ("pending", "in_progress")
    running = await wait_for_status(client, task["id"], "in_progress", "completed")
    assert running["status"] == "in_progress"
    assert running["started_at"] is not None
    assert running["finished_at"] is None
    done = await wait_for_status(client, task["id"], "completed")
    assert done["result"] == {"slept": 0.6}


async def test_failure_is_recorded_with_type_message_and_traceback(
    client: httpx.AsyncClient, worker: None
) -> None:
    task = await submit(client, type="fail", params={"message": "boom"}, max_attempts=1)
    failed = await wait_for_status(client, task["id"], "failed")
    assert failed["attempts"] == 1
    assert failed["result"] is None
    assert failed["error"]["type"] == "IntentionalFailure"
    assert failed["error"]["message"] == "boom"
    assert "raise IntentionalFailure" in failed["error"]["traceback"]


async def test_failed_attempt_is_retried_until_max_attempts(
    client: httpx.AsyncClient, worker: None
) -> None:
    task = await submit(client, type="fail", params={"message": "again"}, max_attempts=2)
    waiting = await _wait_for_attempts(client, task["id"], 1)
    assert waiting["status"] == "pending"
    assert waiting["finished_at"] is None
    assert waiting["error"]["message"] == "again"
    assert waiting["scheduled_at"] is not None
    failed = await wait_for_status(client, task["id"], "failed")
    assert failed["attempts"] == 2


async def _wait_for_attempts(
    client: httpx.AsyncClient, task_id: int, attempts: int
) -> dict[str, Any]:
    for _ in range(200):
        task: dict[str, Any] = (await client.get(f"/tasks/{task_id}")).json()
        if task["attempts"] >= attempts and task["status"] != "in_progress":
            return task
        await asyncio.sleep(0.02)
    raise AssertionError(f"task {task_id} never reached {attempts} attempts")


async def test_cancelled_pending_task_never_runs(client: httpx.AsyncClient, worker: None) -> None:
    run_at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    task = await submit(client, type="echo", params={"value": 1}, run_at=run_at)
    response = await client.delete(f"/tasks/{task['id']}")
    assert response.status_code == 200
    await asyncio.sleep(1.5)
    after = (await client.get(f"/tasks/{task['id']}")).json()
    assert after["status"] == "cancelled"
    assert after["started_at"] is None


async def test_running_async_task_is_aborted(client: httpx.AsyncClient, worker: None) -> None:
    task = await submit(client, type="sleep", params={"seconds": 60})
    await wait_for_status(client, task["id"], "in_progress")
    response = await client.delete(f"/tasks/{task['id']}")
    assert response.status_code == 202
    # Asked to stop; an async task may have stopped already when the answer is read.
    body = response.json()
    assert (body["status"], body["abort_requested"]) in {
        ("in_progress", True),
        ("cancelled", False),
    }
    cancelled = await wait_for_status(client, task["id"], "cancelled", within=2)
    assert cancelled["error"]["type"] == "aborted"
    assert cancelled["finished_at"] is not None
    again = await client.delete(f"/tasks/{task['id']}")
    assert again.status_code == 409


async def test_running_sync_task_is_aborted(client: httpx.AsyncClient, worker: None) -> None:
    task = await submit(client, type="sync_wait", params={"seconds": 60})
    await wait_for_status(client, task["id"], "in_progress")
    assert (await client.delete(f"/tasks/{task['id']}")).status_code == 202
    await wait_for_status(client, task["id"], "cancelled", within=2)


async def test_higher_priority_runs_first(
    client: httpx.AsyncClient, settings: Settings, registry: TaskRegistry
) -> None:
    low = [await submit(client, type="echo", params={"value": i}) for i in range(5)]
    high = await submit(client, type="echo", params={"value": "urgent"}, priority=10)
    one_at_a_time = settings.model_copy(update={"concurrency": 1})
    async with running_worker(one_at_a_time, registry):
        for task in [*low, high]:
            await wait_for_status(client, task["id"], "completed")
    started = {
        t["id"]: t["started_at"]
        for t in (await client.get("/tasks", params={"status": "completed"})).json()["items"]
    }
    assert started[high["id"]] < min(started[t["id"]] for t in low)
    low_order = sorted(low, key=lambda t: started[t["id"]])
    assert [t["id"] for t in low_order] == [t["id"] for t in low]


async def test_run_at_in_the_future_is_not_run_before(
    client: httpx.AsyncClient, worker: None
) -> None:
    run_at = datetime.now(UTC) + timedelta(seconds=1.5)
    task = await submit(client, type="echo", params={"value": 1}, run_at=run_at.isoformat())
    assert task["status"] == "pending"
    assert datetime.fromisoformat(task["scheduled_at"]) == run_at
    await asyncio.sleep(0.8)
    assert (await client.get(f"/tasks/{task['id']}")).json()["status"] == "pending"
    done = await wait_for_status(client, task["id"], "completed", within=5)
    assert datetime.fromisoformat(done["started_at"]) >= run_at


async def test_health_counts_live_workers(client: httpx.AsyncClient, worker: None) -> None:
    assert (await client.get("/health")).json()["workers"] == 1


async def test_sql_view_shows_what_the_api_shows(
    client: httpx.AsyncClient, worker: None, database_url: str
) -> None:
    task = await submit(client, type="echo", params={"value": {"a": 1}})
    done = await wait_for_status(client, task["id"], "completed")
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT status, type, result::text, attempts FROM taskservice.tasks WHERE id = $1",
            task["id"],
        )
        job = await conn.fetchrow(
            "SELECT status::text, task_name FROM procrastinate_jobs WHERE id = $1", task["id"]
        )
    finally:
        await conn.close()
    assert row is not None
    assert job is not None
    assert dict(row) == {"status": "completed", "type": "echo", "result": '{"a": 1}', "attempts": 1}
    assert dict(job) == {"status": "succeeded", "task_name": "echo"}
    assert done["status"] == "completed"
