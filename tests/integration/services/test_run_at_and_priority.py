"""run_at and delay_seconds, priorities, and the queues overview."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx

from taskservice.registry import TaskRegistry
from taskservice.settings import Settings
from tests.conftest import running_worker
from tests.helpers import submit, wait_for_status


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_run_at_and_delay_seconds_together_are_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/tasks",
        json={
            "type": "echo",
            "params": {"value": 1},
            "run_at": "2030-01-01T00:00:00Z",
            "delay_seconds": 5,
        },
    )
    assert response.status_code == 422
    assert "not both" in response.json()["detail"][0]["msg"]


async def test_delayed_task_starts_within_a_second_of_its_time(
    client: httpx.AsyncClient, worker: None
) -> None:
    task = await submit(client, type="echo", params={"value": 1}, delay_seconds=1.5)
    scheduled = _at(task["scheduled_at"])
    assert 1.3 < (scheduled - _at(task["created_at"])).total_seconds() < 1.7
    done = await wait_for_status(client, task["id"], "completed", within=5)
    late = (_at(done["started_at"]) - scheduled).total_seconds()
    assert 0 <= late < 1.0


async def test_run_at_in_the_past_runs_now(client: httpx.AsyncClient, worker: None) -> None:
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    task = await submit(client, type="echo", params={"value": 1}, run_at=past)
    done = await wait_for_status(client, task["id"], "completed", within=2)
    assert (_at(done["started_at"]) - _at(done["created_at"])).total_seconds() < 1


async def test_high_priority_overtakes_a_waiting_backlog(
    client: httpx.AsyncClient, settings: Settings, registry: TaskRegistry
) -> None:
    """50 low-priority tasks wait; one high-priority task submitted after them
    waits for at most one task per worker slot (those already running)."""
    slots = 2
    backlog = [await submit(client, type="sleep", params={"seconds": 0.1}) for _ in range(50)]
    async with running_worker(settings.model_copy(update={"concurrency": slots}), registry):
        await wait_for_status(client, backlog[0]["id"], "in_progress", "completed")
        urgent = await submit(client, type="sleep", params={"seconds": 0.1}, priority=100)
        urgent = await wait_for_status(client, urgent["id"], "completed", within=10)
        started_before = []
        for task in backlog:
            current = (await client.get(f"/tasks/{task['id']}")).json()
            if current["started_at"] and current["started_at"] < urgent["started_at"]:
                started_before.append(current)
        submitted = urgent["created_at"]
        overtook = [t for t in started_before if t["started_at"] > submitted]
        assert len(overtook) <= slots, overtook
        assert len(started_before) < 50


async def test_queues_overview(client: httpx.AsyncClient) -> None:
    await submit(client, type="echo", params={"value": 1}, queue="emails")
    await submit(client, type="echo", params={"value": 2}, queue="emails", delay_seconds=60)
    cancelled = await submit(client, type="echo", params={"value": 3}, queue="reports")
    await client.delete(f"/tasks/{cancelled['id']}")
    await asyncio.sleep(0.2)
    queues = {q["queue"]: q for q in (await client.get("/queues")).json()}
    assert queues["emails"]["pending"] == 2
    assert queues["emails"]["cancelled"] == 0
    assert 0.1 < queues["emails"]["oldest_pending_seconds"] < 5  # the delayed one is not due
    assert queues["reports"]["cancelled"] == 1
    assert queues["reports"]["oldest_pending_seconds"] is None
