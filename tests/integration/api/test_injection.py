"""SQL stays parameterised: injection strings and LIKE wildcards in every filter and
field are taken literally, and give what a plain value would."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.anyio  # at collection: parametrized async tests need it then

HOSTILE = ["' OR 1=1 --", "%", "_", "\\", "'; DROP TABLE procrastinate_jobs; --", '"', "%_\\%"]


async def _ids(client: httpx.AsyncClient, **filters: str) -> list[int]:
    response = await client.get("/tasks", params=filters)
    assert response.status_code == 200, response.text
    return [task["id"] for task in response.json()["items"]]


@pytest.mark.parametrize("text", HOSTILE)
async def test_hostile_text_in_task_fields_is_stored_and_matched_literally(
    client: httpx.AsyncClient, text: str
) -> None:
    plain = await client.post("/tasks", json={"type": "echo", "params": {"value": 1}})
    assert plain.status_code == 201
    response = await client.post(
        "/tasks",
        json={"type": "echo", "params": {"value": text, text: text}, "unique_key": text},
        headers={"Idempotency-Key": text},
    )
    # echo takes only `value`: the extra key is refused by name, not run as SQL.
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "params", text]
    body: dict[str, Any] = {"type": "echo", "params": {"value": text}, "unique_key": text}
    created = await client.post("/tasks", json=body, headers={"Idempotency-Key": text})
    assert created.status_code == 201, created.text
    task = (await client.get(f"/tasks/{created.json()['id']}")).json()
    assert (task["params"], task["unique_key"]) == ({"value": text}, text)
    replay = await client.post("/tasks", json=body, headers={"Idempotency-Key": text})
    assert (replay.status_code, replay.json()["id"]) == (200, task["id"])
    taken = await client.post("/tasks", json={**body, "params": {"value": 2}})
    assert taken.status_code == 409
    assert taken.json()["detail"][0]["ctx"]["task_id"] == task["id"]

    everything = await _ids(client)
    assert everything == [task["id"], plain.json()["id"]]
    # A filter with the hostile text matches what a name nobody uses matches: nothing.
    for field in ("type", "queue"):
        assert await _ids(client, **{field: text}) == await _ids(client, **{field: "nobody"}) == []
    assert await _ids(client) == everything


async def test_a_queue_named_like_a_wildcard_matches_only_itself(
    client: httpx.AsyncClient,
) -> None:
    ids = {}
    for queue in ("_", "a", "a_b", "axb"):
        response = await client.post(
            "/tasks", json={"type": "echo", "params": {"value": 1}, "queue": queue}
        )
        assert response.status_code == 201, response.text
        ids[queue] = response.json()["id"]
    for queue, task_id in ids.items():
        assert await _ids(client, queue=queue) == [task_id]


@pytest.mark.parametrize("text", HOSTILE)
async def test_hostile_text_in_filters_that_take_no_free_text_is_422(
    client: httpx.AsyncClient, text: str
) -> None:
    for field in ("status", "created_after", "created_before", "cursor", "limit"):
        response = await client.get("/tasks", params={field: text})
        assert response.status_code == 422, (field, response.text)
        assert response.json()["detail"][0]["loc"] == ["query", field]
    for path in (f"/tasks/{text}", f"/scheduler/jobs/{text}"):
        response = await client.get(path)
        assert response.status_code in (404, 422), (path, response.text)


@pytest.mark.parametrize("text", HOSTILE)
async def test_hostile_text_in_a_schedule_is_stored_literally(
    client: httpx.AsyncClient, text: str
) -> None:
    body = {"name": text, "type": "echo", "params": {"value": text}, "cron": "0 3 * * *"}
    created = await client.post("/scheduler/jobs", json=body)
    assert created.status_code == 201, created.text
    schedule = (await client.get(f"/scheduler/jobs/{created.json()['id']}")).json()
    assert (schedule["name"], schedule["params"]) == (text, {"value": text})
    assert (await client.post("/scheduler/jobs", json=body)).status_code == 409
    other = await client.post("/scheduler/jobs", json={**body, "name": "plain"})
    assert other.status_code == 201
    names = [s["name"] for s in (await client.get("/scheduler/jobs")).json()["schedules"]]
    assert sorted(names) == sorted(["taskservice.cleanup", text, "plain"])
