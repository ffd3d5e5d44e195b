"""Time limits: a run over its limit fails with error type `timeout` and is retried."""

from __future__ import annotations

import httpx

from tests.helpers import submit, wait_for_status


async def test_async_task_over_its_limit_times_out_and_retries(
    client: httpx.AsyncClient, worker: None
) -> None:
    task = await submit(
        client, type="nap", params={"seconds": 30}, timeout_seconds=0.3, max_attempts=2
    )
    assert task["timeout_seconds"] == 0.3
    failed = await wait_for_status(client, task["id"], "failed", within=10)
    assert failed["error"]["type"] == "timeout"
    assert [a["error"]["type"] for a in failed["attempt_history"]] == ["timeout", "timeout"]


async def test_type_limit_applies_by_default(client: httpx.AsyncClient) -> None:
    task = await submit(client, type="nap", params={"seconds": 0})
    assert task["timeout_seconds"] == 5


async def test_sync_task_is_stopped_through_its_abort_check(
    client: httpx.AsyncClient, worker: None
) -> None:
    task = await submit(
        client, type="sync_wait", params={"seconds": 30}, timeout_seconds=0.3, max_attempts=1
    )
    failed = await wait_for_status(client, task["id"], "failed", within=10)
    assert failed["error"]["type"] == "timeout"


async def test_a_limit_above_the_type_limit_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/tasks", json={"type": "nap", "params": {"seconds": 1}, "timeout_seconds": 6}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "timeout_seconds"]


async def test_a_task_within_its_limit_completes(client: httpx.AsyncClient, worker: None) -> None:
    task = await submit(client, type="nap", params={"seconds": 0.1}, timeout_seconds=2)
    assert (await wait_for_status(client, task["id"], "completed"))["result"] == "rested"
