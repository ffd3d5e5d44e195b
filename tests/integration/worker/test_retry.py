"""Retries with backoff, attempt history, and re-running a finished task."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import httpx

from tests.helpers import submit, wait_for_status


async def _wait_for(client: httpx.AsyncClient, task_id: int, check: Any) -> dict[str, Any]:
    for _ in range(400):
        task: dict[str, Any] = (await client.get(f"/tasks/{task_id}")).json()
        if check(task):
            return task
        await asyncio.sleep(0.025)
    raise AssertionError(f"task {task_id} never got there: {task}")


async def test_every_attempt_is_kept_with_its_error(
    client: httpx.AsyncClient, worker: None
) -> None:
    task = await submit(
        client, type="fail", params={"message": "nope"}, max_attempts=3, backoff_seconds=0.2
    )
    failed = await wait_for_status(client, task["id"], "failed", within=15)
    assert failed["attempts"] == 3
    history = failed["attempt_history"]
    assert [a["attempt"] for a in history] == [1, 2, 3]
    assert [a["outcome"] for a in history] == ["retry", "retry", "failed"]
    assert all(a["error"]["message"] == "nope" for a in history)
    assert all(a["started_at"] <= a["finished_at"] for a in history)


async def test_waiting_for_next_attempt_is_pending_with_next_attempt_at(
    client: httpx.AsyncClient, worker: None
) -> None:
    task = await submit(client, type="fail", params={}, max_attempts=2, backoff_seconds=2)
    waiting = await _wait_for(
        client, task["id"], lambda t: t["attempts"] == 1 and t["status"] == "pending"
    )
    assert waiting["next_attempt_at"] is not None
    assert waiting["error"]["type"] == "IntentionalFailure"
    finished = datetime.fromisoformat(waiting["attempt_history"][0]["finished_at"])
    next_at = datetime.fromisoformat(waiting["next_attempt_at"])
    assert 1.5 < (next_at - finished).total_seconds() < 2.5
    failed = await wait_for_status(client, task["id"], "failed", within=10)
    second_start = datetime.fromisoformat(failed["attempt_history"][1]["started_at"])
    assert 0 <= (second_start - next_at).total_seconds() < 1.0


async def test_a_retried_failure_can_succeed(client: httpx.AsyncClient, worker: None) -> None:
    task = await submit(client, type="flaky", params={"seconds": 0})
    done = await wait_for_status(client, task["id"], "completed", within=10)
    assert done["attempts"] == 2
    assert done["error"] is None
    assert [a["outcome"] for a in done["attempt_history"]] == ["retry", "succeeded"]
    assert done["attempt_history"][0]["error"]["type"] == "ConnectionError"


async def test_submission_limits_come_from_the_type(client: httpx.AsyncClient) -> None:
    for field, value in (("max_attempts", 11), ("backoff_seconds", 301)):
        response = await client.post(
            "/tasks", json={"type": "echo", "params": {"value": 1}, field: value}
        )
        assert response.status_code == 422, field
        [error] = response.json()["detail"]
        assert error["loc"] == ["body", field]
        assert "task type 'echo'" in error["msg"]


async def test_retry_reruns_a_failed_task_as_its_next_attempt(
    client: httpx.AsyncClient, worker: None
) -> None:
    task = await submit(client, type="fail", params={"message": "x"}, max_attempts=1)
    await wait_for_status(client, task["id"], "failed")
    response = await client.post(f"/tasks/{task['id']}/retry")
    assert response.status_code == 200
    # The task as it is now: queued again, or (a fast worker) already re-run.
    now = response.json()
    assert now["status"] in ("pending", "in_progress") or (
        now["status"] == "failed" and now["attempts"] == 2
    ), now
    again = await _wait_for(
        client, task["id"], lambda t: t["status"] == "failed" and t["attempts"] == 2
    )
    assert [a["attempt"] for a in again["attempt_history"]] == [1, 2]


async def test_retry_reruns_a_cancelled_task(client: httpx.AsyncClient, worker: None) -> None:
    task = await submit(client, type="echo", params={"value": 5}, delay_seconds=60)
    assert (await client.delete(f"/tasks/{task['id']}")).status_code == 200
    assert (await client.post(f"/tasks/{task['id']}/retry")).status_code == 200
    done = await wait_for_status(client, task["id"], "completed")
    assert done["result"] == 5
    assert done["attempts"] == 1


async def test_retry_refuses_pending_and_completed_tasks(
    client: httpx.AsyncClient, worker: None
) -> None:
    pending = await submit(client, type="echo", params={"value": 1}, delay_seconds=60)
    response = await client.post(f"/tasks/{pending['id']}/retry")
    assert response.status_code == 409
    assert response.json()["detail"][0]["ctx"]["status"] == "pending"
    done = await submit(client, type="echo", params={"value": 1})
    await wait_for_status(client, done["id"], "completed")
    assert (await client.post(f"/tasks/{done['id']}/retry")).status_code == 409
    assert (await client.post("/tasks/424242/retry")).status_code == 404
