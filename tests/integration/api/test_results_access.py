"""API keys on the no-polling endpoints: another key's task or batch is a 404 to
wait on or stream, and GET /events shows a key only its own tasks."""

from __future__ import annotations

import httpx

from taskservice.api.app import create_app
from taskservice.models.keys import Scope
from taskservice.registry import TaskRegistry
from taskservice.settings import Settings
from tests.integration.api.test_auth import MakeKey, bearer, make_key  # noqa: F401 - fixture
from tests.live_api import read_events, serving


async def test_other_keys_tasks_and_batches_are_not_found(
    client: httpx.AsyncClient,
    make_key: MakeKey,  # noqa: F811 - the fixture
) -> None:
    alice = bearer(await make_key("alice", Scope.SUBMIT, Scope.READ))
    bob = bearer(await make_key("bob", Scope.SUBMIT, Scope.READ))
    admin = bearer(await make_key("admin", Scope.ADMIN))
    task = (
        await client.post("/tasks", json={"type": "echo", "params": {"value": 1}}, headers=alice)
    ).json()
    batch = (
        await client.post(
            "/tasks/batch",
            json={"tasks": [{"type": "echo", "params": {"value": 1}}]},
            headers=alice,
        )
    ).json()
    for path, params in [
        (f"/tasks/{task['id']}", {"wait": 0.2}),
        (f"/tasks/{task['id']}/events", {}),
        (f"/batches/{batch['batch_id']}", {}),
        (f"/batches/{batch['batch_id']}", {"wait": 0.2}),
    ]:
        assert (await client.get(path, params=params, headers=bob)).status_code == 404, path
        assert (await client.get(path, params=params, headers={})).status_code == 401, path
    listed = await client.get("/tasks", params={"batch_id": batch["batch_id"]}, headers=bob)
    assert listed.json()["items"] == []
    for who in (alice, admin):
        waited = await client.get(f"/tasks/{task['id']}", params={"wait": 0.2}, headers=who)
        assert waited.status_code == 200
        got = await client.get(f"/batches/{batch['batch_id']}", headers=who)
        assert got.json()["total"] == 1


async def test_the_events_stream_shows_a_key_its_own_tasks(
    settings: Settings,
    registry: TaskRegistry,
    make_key: MakeKey,  # noqa: F811 - the fixture
) -> None:
    alice = bearer(await make_key("alice", Scope.SUBMIT, Scope.READ))
    bob = bearer(await make_key("bob", Scope.SUBMIT, Scope.READ))
    app = create_app(settings, registry=registry)
    async with (
        serving(app) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as http,
        http.stream("GET", "/events", headers=bob) as response,
    ):
        events = read_events(response)
        assert (await anext(events)).event == "open"
        body = {"type": "echo", "params": {"value": 1}}
        await http.post("/tasks", json=body, headers=alice)
        mine = (await http.post("/tasks", json=body, headers=bob)).json()
        event = await anext(events)
    assert (event.data["id"], event.data["status"]) == (mine["id"], "pending")
