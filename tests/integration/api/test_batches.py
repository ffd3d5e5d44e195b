"""POST /tasks/batch (all or nothing, one statement), GET /tasks?batch_id=, GET /batches/{id}."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from taskservice.registry import TaskRegistry
from taskservice.settings import Settings
from tests.conftest import running_worker


async def _count(database_url: str, query: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval(query)
        return count
    finally:
        await conn.close()


async def test_a_batch_of_1000_is_stored_in_one_request(
    client: httpx.AsyncClient, database_url: str
) -> None:
    body = {"tasks": [{"type": "echo", "params": {"value": i}} for i in range(1000)]}
    response = await client.post("/tasks/batch", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert len(created["ids"]) == 1000
    assert response.headers["location"] == f"/batches/{created['batch_id']}"

    listed: list[dict[str, Any]] = []
    params: dict[str, Any] = {"batch_id": created["batch_id"], "limit": 500}
    while True:
        page = (await client.get("/tasks", params=params)).json()
        listed += page["items"]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    # In the order given: the i-th id carries the i-th params.
    by_id = {task["id"]: task for task in listed}
    assert [by_id[task_id]["params"]["value"] for task_id in created["ids"]] == list(range(1000))
    assert {task["batch_id"] for task in listed} == {created["batch_id"]}

    batch = (await client.get(f"/batches/{created['batch_id']}")).json()
    assert batch["total"] == batch["pending"] == 1000
    assert batch["done"] is False
    assert await _count(database_url, "SELECT count(*) FROM procrastinate_jobs") == 1000


async def test_a_batch_with_one_bad_item_stores_nothing(
    client: httpx.AsyncClient, database_url: str
) -> None:
    tasks: list[dict[str, Any]] = [{"type": "echo", "params": {"value": i}} for i in range(30)]
    tasks[17] = {"type": "echo", "params": {}}  # `value` is required
    tasks[21] = {"type": "nope"}
    response = await client.post("/tasks/batch", json={"tasks": tasks})
    assert response.status_code == 422
    locs = [error["loc"] for error in response.json()["detail"]]
    assert locs == [["body", "tasks", 17, "params", "value"], ["body", "tasks", 21, "type"]]
    assert await _count(database_url, "SELECT count(*) FROM procrastinate_jobs") == 0
    assert await _count(database_url, "SELECT count(*) FROM taskservice.batches") == 0


async def test_a_batch_whose_insert_fails_stores_nothing(
    client: httpx.AsyncClient, database_url: str
) -> None:
    tasks = [{"type": "echo", "params": {"value": i}} for i in range(5)]
    tasks[3]["unique_key"] = tasks[4]["unique_key"] = "same"  # the database refuses the 5th
    response = await client.post("/tasks/batch", json={"tasks": tasks})
    assert response.status_code == 409
    assert await _count(database_url, "SELECT count(*) FROM procrastinate_jobs") == 0
    assert await _count(database_url, "SELECT count(*) FROM taskservice.batches") == 0


async def test_batch_size_is_bounded(client: httpx.AsyncClient) -> None:
    too_many = {"tasks": [{"type": "echo", "params": {"value": 1}}] * 1001}
    assert (await client.post("/tasks/batch", json=too_many)).status_code == 422
    assert (await client.post("/tasks/batch", json={"tasks": []})).status_code == 422
    assert (await client.get("/batches/12345")).status_code == 404


async def test_waiting_for_a_batch_answers_when_its_last_task_ends(
    client: httpx.AsyncClient, settings: Settings, registry: TaskRegistry
) -> None:
    body = {
        "tasks": [
            {"type": "echo", "params": {"value": 1}},
            {"type": "sleep", "params": {"seconds": 1}},
            {"type": "fail", "params": {}, "max_attempts": 1},
        ]
    }
    created = (await client.post("/tasks/batch", json=body)).json()
    still = (await client.get(f"/batches/{created['batch_id']}", params={"wait": 0.2})).json()
    assert still["done"] is False
    async with running_worker(settings, registry):
        response = await client.get(f"/batches/{created['batch_id']}", params={"wait": 30})
    batch = response.json()
    assert batch["done"] is True
    assert (batch["completed"], batch["failed"], batch["pending"]) == (2, 1, 0)
    failed = (
        await client.get("/tasks", params={"batch_id": created["batch_id"], "status": "failed"})
    ).json()
    assert [task["type"] for task in failed["items"]] == ["fail"]


async def test_cleanup_prunes_batches_left_without_tasks(
    client: httpx.AsyncClient, settings: Settings, registry: TaskRegistry, database_url: str
) -> None:
    one = {"tasks": [{"type": "echo", "params": {"value": 1}}]}
    old = (await client.post("/tasks/batch", json=one)).json()
    recent = (await client.post("/tasks/batch", json=one)).json()
    async with running_worker(settings, registry):
        for batch in (old, recent):
            await client.get(f"/batches/{batch['batch_id']}", params={"wait": 30})
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "UPDATE taskservice.task_records SET finished_at = now() - interval '8 days' "
                "WHERE batch_id = $1",
                old["batch_id"],
            )
            await conn.execute(
                "UPDATE taskservice.batches SET created_at = now() - interval '8 days' "
                "WHERE id = $1",
                old["batch_id"],
            )
        finally:
            await conn.close()
        schedules = (await client.get("/scheduler/jobs")).json()["schedules"]
        [cleanup] = [s for s in schedules if s["name"] == "taskservice.cleanup"]
        run = (await client.post(f"/scheduler/jobs/{cleanup['id']}/run")).json()
        done = (await client.get(f"/tasks/{run['id']}", params={"wait": 30})).json()
    assert done["result"]["deleted_batches"] == 1
    assert (await client.get(f"/batches/{old['batch_id']}")).status_code == 404
    assert (await client.get(f"/batches/{recent['batch_id']}")).status_code == 200
