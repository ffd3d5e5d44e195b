"""API keys on the HTTP API: 401 without a valid key, 403 without the scope, 404 for
another key's task, and the loopback-only open mode while no key exists."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from taskservice.api.app import create_app
from taskservice.models.keys import Scope
from taskservice.registry import TaskRegistry
from taskservice.services import keys as key_service
from taskservice.settings import Settings
from taskservice.store import asyncpg_driver as db

MakeKey = Callable[..., Awaitable[str]]
UNKNOWN_KEY = "tsk_abcdefgh_" + "A" * 43


@pytest.fixture
async def make_key(database_url: str) -> AsyncIterator[MakeKey]:
    """Creates a key on the test database; returns its secret."""
    pool = await db.create_pool(database_url, max_size=1)

    async def make(name: str, *scopes: Scope) -> str:
        _, secret = await key_service.create_key(pool=pool, name=name, scopes=scopes)
        return secret

    yield make
    await pool.close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _submit(client: httpx.AsyncClient, key: str, **extra: Any) -> dict[str, Any]:
    body = {"type": "echo", "params": {"value": 1}, **extra.pop("body", {})}
    response = await client.post("/tasks", json=body, headers={**bearer(key), **extra})
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


async def test_open_until_the_first_key_then_every_call_needs_one(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    assert (await client.get("/tasks")).status_code == 200
    await make_key("first", Scope.ADMIN)
    # The first key counts once its notification reaches the API, a few
    # milliseconds after its commit (test_key_cache.py bounds how soon): a
    # request sent before then is still answered in the open mode.
    response = await client.get("/tasks")
    deadline = time.monotonic() + 2.0
    while response.status_code == 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        response = await client.get("/tasks")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["detail"][0]["loc"] == ["header", "Authorization"]


async def test_missing_malformed_or_unknown_key_is_401(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    await make_key("admin", Scope.ADMIN)
    headers: list[dict[str, str]] = [{}] + [
        {"Authorization": value}
        for value in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer not-a-key", f"Bearer {UNKNOWN_KEY}")
    ]
    for header in headers:
        for method, path in [("GET", "/tasks"), ("POST", "/tasks"), ("GET", "/task-types")]:
            response = await client.request(method, path, headers=header, json={})
            assert response.status_code == 401, (header, method, path, response.text)
            assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_health_needs_no_key(client: httpx.AsyncClient, make_key: MakeKey) -> None:
    await make_key("admin", Scope.ADMIN)
    for path in ("/health", "/health/live", "/health/ready"):
        assert (await client.get(path)).status_code == 200, path


async def test_a_revoked_key_is_refused_at_once(
    client: httpx.AsyncClient, make_key: MakeKey, database_url: str
) -> None:
    key = await make_key("soon-gone", Scope.READ)
    assert (await client.get("/tasks", headers=bearer(key))).status_code == 200
    pool = await db.create_pool(database_url, max_size=1)
    try:
        await key_service.revoke_key(pool=pool, name="soon-gone")
    finally:
        await pool.close()
    assert (await client.get("/tasks", headers=bearer(key))).status_code == 401


async def test_a_key_without_the_scope_is_403(client: httpx.AsyncClient, make_key: MakeKey) -> None:
    reader = await make_key("reader", Scope.READ)
    submitter = await make_key("submitter", Scope.SUBMIT)
    schedule = {"name": "s", "type": "echo", "params": {"value": 1}, "interval_seconds": 60}
    cases = [
        (reader, "POST", "/tasks", {"type": "echo", "params": {"value": 1}}),
        (submitter, "GET", "/tasks", None),
        (submitter, "GET", "/queues", None),
        (reader, "POST", "/scheduler/jobs", schedule),
        (submitter, "POST", "/scheduler/jobs", schedule),
    ]
    for key, method, path, body in cases:
        response = await client.request(method, path, headers=bearer(key), json=body)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["detail"][0]["type"] == "missing_scope"


async def test_a_key_sees_and_touches_only_its_own_tasks(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    alice = await make_key("alice", Scope.READ, Scope.SUBMIT)
    bob = await make_key("bob", Scope.READ, Scope.SUBMIT)
    admin = await make_key("admin", Scope.ADMIN)
    alices = await _submit(client, alice, body={"delay_seconds": 3600})
    bobs = await _submit(client, bob, body={"delay_seconds": 3600})

    assert (await client.get(f"/tasks/{alices['id']}", headers=bearer(alice))).status_code == 200
    for method, path in [
        ("GET", f"/tasks/{bobs['id']}"),
        ("DELETE", f"/tasks/{bobs['id']}"),
        ("POST", f"/tasks/{bobs['id']}/retry"),
    ]:
        response = await client.request(method, path, headers=bearer(alice))
        assert response.status_code == 404, (method, path, response.text)

    listed = (await client.get("/tasks", headers=bearer(alice))).json()["items"]
    assert [t["id"] for t in listed] == [alices["id"]]
    everything = (await client.get("/tasks", headers=bearer(admin))).json()["items"]
    assert {alices["id"], bobs["id"]} <= {t["id"] for t in everything}
    one_off = (await client.get("/scheduler/jobs?include=one_off", headers=bearer(bob))).json()[
        "one_off"
    ]
    assert [t["id"] for t in one_off] == [bobs["id"]]

    assert (await client.delete(f"/tasks/{bobs['id']}", headers=bearer(bob))).status_code == 200
    assert (
        await client.post(f"/tasks/{bobs['id']}/retry", headers=bearer(admin))
    ).status_code == 200


async def test_idempotency_keys_are_per_api_key(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    alice = await make_key("alice", Scope.SUBMIT)
    bob = await make_key("bob", Scope.SUBMIT)
    first = await _submit(client, alice, **{"Idempotency-Key": "order-1"})
    second = await _submit(client, bob, **{"Idempotency-Key": "order-1"})
    assert first["id"] != second["id"]
    replay = await client.post(
        "/tasks",
        json={"type": "echo", "params": {"value": 1}},
        headers={**bearer(alice), "Idempotency-Key": "order-1"},
    )
    assert replay.status_code == 200
    assert replay.json()["id"] == first["id"]


async def test_a_schedules_runs_belong_to_its_creator(
    client: httpx.AsyncClient, make_key: MakeKey, database_url: str
) -> None:
    admin = await make_key("ops", Scope.ADMIN)
    other = await make_key("other", Scope.READ)
    created = await client.post(
        "/scheduler/jobs",
        json={"name": "nightly", "type": "echo", "params": {"value": 1}, "cron": "0 3 * * *"},
        headers=bearer(admin),
    )
    assert created.status_code == 201, created.text
    run = await client.post(f"/scheduler/jobs/{created.json()['id']}/run", headers=bearer(admin))
    assert run.status_code == 201, run.text
    task_id = run.json()["id"]
    assert (await client.get(f"/tasks/{task_id}", headers=bearer(other))).status_code == 404
    conn = await asyncpg.connect(database_url)
    try:
        owner = await conn.fetchval(
            "SELECT k.name FROM taskservice.tasks AS t"
            " JOIN taskservice.api_keys AS k ON k.id = t.owner_key_id WHERE t.id = $1",
            task_id,
        )
    finally:
        await conn.close()
    assert owner == "ops"


async def test_metrics_need_a_key_unless_public(
    settings: Settings, registry: TaskRegistry, make_key: MakeKey
) -> None:
    key = await make_key("scraper", Scope.READ)
    for public, without_key in [(False, 401), (True, 200)]:
        app = create_app(settings.model_copy(update={"metrics_public": public}), registry=registry)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as http,
        ):
            assert (await http.get("/metrics")).status_code == without_key
            assert (await http.get("/metrics", headers=bearer(key))).status_code == 200


async def test_cors_is_off_unless_origins_are_configured(
    settings: Settings, registry: TaskRegistry
) -> None:
    preflight = {"Origin": "https://ops.example", "Access-Control-Request-Method": "GET"}
    for origins, allowed in [([], None), (["https://ops.example"], "https://ops.example")]:
        app = create_app(settings.model_copy(update={"cors_origins": origins}), registry=registry)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as http,
        ):
            response = await http.options("/tasks", headers=preflight)
            assert response.headers.get("access-control-allow-origin") == allowed


async def test_me_names_the_key_and_its_scopes(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    submitter = await make_key("ci", Scope.SUBMIT)  # no `read`: /me answers any valid key
    response = await client.get("/me", headers=bearer(submitter))
    assert response.json() == {"name": "ci", "scopes": ["submit"], "open_mode": False}
    assert (await client.get("/me")).status_code == 401
    assert (await client.get("/workers", headers=bearer(submitter))).status_code == 403
    assert (await client.get("/stats/throughput", headers=bearer(submitter))).status_code == 403


async def test_a_task_read_answers_alike_on_both_paths(
    client: httpx.AsyncClient, make_key: MakeKey
) -> None:
    """GET /tasks/{id} without a query string is answered by a fast path
    (api/fast_path.py), with one by FastAPI's handler: the same answers."""
    alice = await make_key("alice", Scope.READ, Scope.SUBMIT)
    bob = await make_key("bob", Scope.READ, Scope.SUBMIT)
    submitter = await make_key("submitter", Scope.SUBMIT)
    admin = await make_key("admin", Scope.ADMIN)
    alices = await _submit(client, alice, body={"params": {"value": "é ✓"}})
    path = f"/tasks/{alices['id']}"
    cases = [
        (alice, path, 200),
        (admin, path, 200),
        (bob, path, 404),  # another key's task
        (alice, f"/tasks/{alices['id'] + 1000}", 404),
        (submitter, path, 403),
        (UNKNOWN_KEY, path, 401),
        (None, path, 401),
    ]
    for key, url, status in cases:
        headers = bearer(key) if key else {}
        fast = await client.get(url, headers=headers)
        full = await client.get(f"{url}?wait=0", headers=headers)
        assert fast.status_code == status, (key, url, fast.text)
        assert (fast.status_code, fast.headers, fast.content) == (
            full.status_code,
            full.headers,
            full.content,
        ), (key, url)
