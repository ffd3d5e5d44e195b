"""Idempotency-Key on POST /tasks, and unique_key (at most one pending task per key)."""

from __future__ import annotations

import asyncio

import httpx

from tests.helpers import submit, wait_for_status

BODY = {"type": "echo", "params": {"value": 1}}


async def test_same_key_same_body_returns_the_first_task(client: httpx.AsyncClient) -> None:
    first = await client.post("/tasks", json=BODY, headers={"Idempotency-Key": "k1"})
    again = await client.post("/tasks", json=BODY, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert len((await client.get("/tasks")).json()["items"]) == 1


async def test_same_key_other_body_is_409(client: httpx.AsyncClient) -> None:
    await client.post("/tasks", json=BODY, headers={"Idempotency-Key": "k2"})
    other = await client.post(
        "/tasks", json={**BODY, "priority": 3}, headers={"Idempotency-Key": "k2"}
    )
    assert other.status_code == 409
    assert other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


async def test_concurrent_requests_with_one_key_make_one_task(client: httpx.AsyncClient) -> None:
    responses = await asyncio.gather(
        *(client.post("/tasks", json=BODY, headers={"Idempotency-Key": "k3"}) for _ in range(8))
    )
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert len({r.json()["id"] for r in responses}) == 1


async def test_key_is_forgotten_after_the_retention_window(
    client: httpx.AsyncClient, database_url: str
) -> None:
    import asyncpg

    first = await client.post("/tasks", json=BODY, headers={"Idempotency-Key": "k4"})
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE taskservice.idempotency_keys SET created_at = now() - interval '2 days'"
        )
    finally:
        await conn.close()
    later = await client.post("/tasks", json=BODY, headers={"Idempotency-Key": "k4"})
    assert later.status_code == 201
    assert later.json()["id"] != first.json()["id"]


async def test_bad_key_header_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/tasks", json=BODY, headers={"Idempotency-Key": "x" * 256})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


async def test_unique_key_allows_one_pending_task(client: httpx.AsyncClient) -> None:
    first = await submit(client, **BODY, unique_key="report:42", delay_seconds=60)
    second = await client.post("/tasks", json={**BODY, "unique_key": "report:42"})
    assert second.status_code == 409
    [error] = second.json()["detail"]
    assert error["loc"] == ["body", "unique_key"]
    assert error["ctx"]["task_id"] == first["id"]
    other = await client.post("/tasks", json={**BODY, "unique_key": "report:43"})
    assert other.status_code == 201


async def test_unique_key_is_free_again_once_the_task_ran(
    client: httpx.AsyncClient, worker: None
) -> None:
    first = await submit(client, **BODY, unique_key="nightly")
    await wait_for_status(client, first["id"], "completed")
    second = await client.post("/tasks", json={**BODY, "unique_key": "nightly"})
    assert second.status_code == 201
    assert second.json()["unique_key"] == "nightly"


async def test_same_key_other_params_is_409(client: httpx.AsyncClient) -> None:
    """The fingerprint covers `params`, not only the envelope."""
    first = await client.post(
        "/tasks", json={"type": "echo", "params": {"value": 1}}, headers={"Idempotency-Key": "k5"}
    )
    other = await client.post(
        "/tasks", json={"type": "echo", "params": {"value": 2}}, headers={"Idempotency-Key": "k5"}
    )
    assert first.status_code == 201
    assert other.status_code == 409
    assert other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


async def test_retry_onto_a_taken_unique_key_is_409_naming_the_holder(
    client: httpx.AsyncClient,
) -> None:
    first = await submit(client, **BODY, unique_key="daily", delay_seconds=60)
    assert (await client.delete(f"/tasks/{first['id']}")).status_code == 200
    holder = await submit(client, **BODY, unique_key="daily", delay_seconds=60)
    response = await client.post(f"/tasks/{first['id']}/retry")
    assert response.status_code == 409, response.text
    [error] = response.json()["detail"]
    assert error["type"] == "unique_key_taken"
    assert error["ctx"]["task_id"] == holder["id"]
    assert (await client.get(f"/tasks/{first['id']}")).json()["status"] == "cancelled"
