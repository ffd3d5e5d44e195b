"""The HTTP API's success and error paths, without a worker running."""

from __future__ import annotations

from typing import Any

import httpx

from taskservice.registry import TaskRegistry
from tests.helpers import submit


async def test_submit_returns_the_stored_pending_task(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/tasks", json={"type": "echo", "params": {"value": 42}, "priority": 5, "queue": "reports"}
    )
    assert response.status_code == 201
    task = response.json()
    assert response.headers["location"] == f"/tasks/{task['id']}"
    assert task["type"] == "echo"
    assert task["params"] == {"value": 42}
    assert task["status"] == "pending"
    assert task["priority"] == 5
    assert task["queue"] == "reports"
    assert task["attempts"] == 0
    assert task["max_attempts"] == 3
    assert task["created_at"] is not None
    assert task["started_at"] is None
    assert task["result"] is None


async def test_get_returns_what_submit_returned(client: httpx.AsyncClient) -> None:
    task = await submit(client, type="echo", params={"value": [1, "two"]})
    response = await client.get(f"/tasks/{task['id']}")
    assert response.status_code == 200
    assert response.json() == {**task, "attempt_history": []}


async def test_unknown_type_is_422_listing_known_types(
    client: httpx.AsyncClient, registry: TaskRegistry
) -> None:
    response = await client.post("/tasks", json={"type": "nope", "params": {}})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "type"]
    # Every type the registry has (the task library's included), sorted, no internal one.
    known = registry.names
    assert {"echo", "fail", "flaky", "nap", "sleep", "sync_wait"} <= set(known)
    assert f"known types: {', '.join(known)}" in error["msg"]
    assert error["ctx"]["known_types"] == known


async def test_bad_params_are_422_naming_the_param(client: httpx.AsyncClient) -> None:
    response = await client.post("/tasks", json={"type": "sleep", "params": {"seconds": "soon"}})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "params", "seconds"]


async def test_missing_and_extra_params_are_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/tasks", json={"type": "echo", "params": {"valu": 1}})
    assert response.status_code == 422
    locs = {tuple(error["loc"]) for error in response.json()["detail"]}
    assert locs == {("body", "params", "value"), ("body", "params", "valu")}


async def test_nothing_is_stored_for_a_rejected_submission(client: httpx.AsyncClient) -> None:
    await client.post("/tasks", json={"type": "sleep", "params": {"seconds": -1}})
    assert (await client.get("/tasks")).json()["items"] == []


async def test_invalid_envelopes_are_422_naming_the_field(client: httpx.AsyncClient) -> None:
    cases = {
        "priority": {"type": "echo", "params": {"value": 1}, "priority": 2**40},
        "queue": {"type": "echo", "params": {"value": 1}, "queue": "x" * 41},
        "run_at": {"type": "echo", "params": {"value": 1}, "run_at": "2030-01-01T00:00:00"},
        "max_attempts": {"type": "echo", "params": {"value": 1}, "max_attempts": 0},
        "surprise": {"type": "echo", "params": {"value": 1}, "surprise": True},
        "params": {"type": "echo", "params": {"value": "a\u0000b"}},
    }
    for field, body in cases.items():
        response = await client.post("/tasks", json=body)
        assert response.status_code == 422, (field, response.text)
        assert response.json()["detail"][0]["loc"][:2] == ["body", field], response.text


async def test_non_finite_numbers_are_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/tasks",
        content=b'{"type": "echo", "params": {"value": NaN}}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:2] == ["body", "params"]


async def test_reserved_options_key_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/tasks", json={"type": "echo", "params": {"value": 1, "_options": {}}}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "params", "_options"]


async def test_malformed_json_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/tasks", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


async def test_too_deep_to_parse_is_400_in_the_same_shape(client: httpx.AsyncClient) -> None:
    body = b'{"type": "echo", "params": {"value": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    response = await client.post(
        "/tasks", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code in (400, 422)
    assert response.json()["detail"][0]["loc"][0] == "body"


async def test_unknown_route_is_404_in_the_same_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["detail"][0]["msg"] == "Not Found"


async def test_unknown_task_is_404(client: httpx.AsyncClient) -> None:
    for method in ("GET", "DELETE"):
        response = await client.request(method, "/tasks/999999")
        assert response.status_code == 404
        assert response.json()["detail"][0]["loc"] == ["path", "task_id"]


async def test_out_of_range_ids_are_422(client: httpx.AsyncClient) -> None:
    for raw in ("0", "abc", str(2**63)):
        response = await client.get(f"/tasks/{raw}")
        assert response.status_code == 422, raw
        assert response.json()["detail"][0]["loc"] == ["path", "task_id"]


async def test_cancel_pending_task(client: httpx.AsyncClient) -> None:
    task = await submit(client, type="echo", params={"value": 1})
    response = await client.delete(f"/tasks/{task['id']}")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    again = await client.delete(f"/tasks/{task['id']}")
    assert again.status_code == 409
    assert again.json()["detail"][0]["ctx"]["status"] == "cancelled"


async def test_list_is_newest_first_with_keyset_pages(client: httpx.AsyncClient) -> None:
    ids = [(await submit(client, type="echo", params={"value": i}))["id"] for i in range(5)]

    async def page(**params: str | int) -> dict[str, Any]:
        page: dict[str, Any] = (await client.get("/tasks", params={"limit": 2, **params})).json()
        return page

    first = await page()
    assert [t["id"] for t in first["items"]] == ids[::-1][:2]
    second = await page(cursor=first["next_cursor"])
    assert [t["id"] for t in second["items"]] == ids[::-1][2:4]
    third = await page(cursor=second["next_cursor"])
    assert [t["id"] for t in third["items"]] == ids[:1]
    assert third["next_cursor"] is None


async def test_list_filters(client: httpx.AsyncClient) -> None:
    echo = await submit(client, type="echo", params={"value": 1}, queue="a")
    sleep = await submit(client, type="sleep", params={"seconds": 1}, queue="b")
    await client.delete(f"/tasks/{sleep['id']}")

    async def ids(**params: str) -> list[int]:
        response = await client.get("/tasks", params=params)
        assert response.status_code == 200, response.text
        return [t["id"] for t in response.json()["items"]]

    assert await ids(type="echo") == [echo["id"]]
    assert await ids(queue="b") == [sleep["id"]]
    assert await ids(status="cancelled") == [sleep["id"]]
    assert await ids(status="pending") == [echo["id"]]
    assert await ids(status="completed") == []
    created = echo["created_at"]
    assert await ids(created_after=created) == [sleep["id"], echo["id"]]
    assert await ids(created_before=created) == []
    assert await ids(created_before="2999-01-01T00:00:00Z", type="sleep") == [sleep["id"]]


async def test_list_rejects_bad_filters_naming_them(client: httpx.AsyncClient) -> None:
    for params in (
        {"status": "done"},
        {"limit": "0"},
        {"limit": "501"},
        {"cursor": "-3"},
        {"cursor": "99999999999999999999"},
        {"created_after": "yesterday"},
    ):
        response = await client.get("/tasks", params=params)
        assert response.status_code == 422, params
        [name] = params
        assert response.json()["detail"][0]["loc"] == ["query", name]


async def test_task_types_lists_schemas(client: httpx.AsyncClient) -> None:
    types = (await client.get("/task-types")).json()
    assert types["sleep"]["params"]["properties"]["seconds"]["type"] == "number"


async def test_health_without_workers(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": True,
        "schema_current": True,
        "missing_migrations": [],
        "workers": 0,
        "reason": None,
    }


async def test_live_and_ready_probes(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["schema_current"] is True


async def test_dropped_database_connections_are_503_then_recover(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """A database restart kills the API's connections: clients get a 503 they can
    retry, never a 500, and the next requests work again."""
    import asyncpg

    task = await submit(client, type="echo", params={"value": 1})
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'taskservice-api' AND datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    codes = [(await client.get(f"/tasks/{task['id']}")).status_code for _ in range(5)]
    assert set(codes) <= {200, 503}, codes
    assert codes[-1] == 200
    failed = [c for c in codes if c == 503]
    if failed:
        response = await client.get("/nowhere")  # still answering
        assert response.status_code == 404


async def test_a_task_read_answers_alike_on_both_paths(client: httpx.AsyncClient) -> None:
    """GET /tasks/{id} without a query string is answered by a fast path
    (api/fast_path.py), with one by FastAPI's handler: the same bytes, and
    whatever the fast path does not know (a malformed id) is FastAPI's 422."""
    task = await submit(client, type="echo", params={"value": ["é", 1.5, None]})
    for path in (f"/tasks/{task['id']}", f"/tasks/{task['id'] + 1000}"):
        fast, full = await client.get(path), await client.get(f"{path}?wait=0")
        assert (fast.status_code, fast.headers, fast.content) == (
            full.status_code,
            full.headers,
            full.content,
        )
    for bad in ("0", "01", "+1", "1.0", "9223372036854775808", "x"):
        response = await client.get(f"/tasks/{bad}")
        assert response.status_code == 422, bad
        assert response.json()["detail"][0]["loc"] == ["path", "task_id"]
