"""Results without polling: GET /tasks/{id}?wait=, the SSE streams, the shared listener."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI

from taskservice.api.app import create_app
from taskservice.registry import TaskRegistry
from taskservice.settings import Settings
from taskservice.store.listener import EventListener
from tests.conftest import running_worker
from tests.helpers import submit
from tests.live_api import read_events, serving
from tests.processes import service_env, service_process


def _listener(client: httpx.AsyncClient) -> EventListener:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    app = transport.app
    assert isinstance(app, FastAPI)
    listener: EventListener = app.state.listener
    return listener


async def test_a_waiter_is_woken_by_a_worker_in_another_process(
    client: httpx.AsyncClient, database_url: str, tmp_path: Path
) -> None:
    task = await submit(client, type="sleep", params={"seconds": 1})
    with service_process("worker", service_env(database_url), tmp_path):
        started = time.monotonic()
        response = await client.get(f"/tasks/{task['id']}", params={"wait": 45})
        waited = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["status"] == "completed"
    assert response.json()["result"] == {"slept": 1.0}
    # Woken by the notification, well before the wait ran out (the worker
    # process starts within a few seconds even on a busy machine).
    assert waited < 30


async def test_a_wait_that_runs_out_answers_the_current_state(client: httpx.AsyncClient) -> None:
    task = await submit(client, type="echo", params={"value": 1}, delay_seconds=600)
    started = time.monotonic()
    response = await client.get(f"/tasks/{task['id']}", params={"wait": 0.5})
    assert time.monotonic() - started >= 0.5
    assert response.status_code == 200
    assert response.json()["status"] == "pending"


async def test_wait_is_bounded_and_404s(client: httpx.AsyncClient) -> None:
    task = await submit(client, type="echo", params={"value": 1})
    assert (await client.get(f"/tasks/{task['id']}", params={"wait": 61})).status_code == 422
    assert (await client.get("/tasks/999999", params={"wait": 1})).status_code == 404


async def _api_connections(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE 'taskservice-api%'"
        )
        return count
    finally:
        await conn.close()


async def test_500_waiters_cost_no_more_than_the_pool_plus_one(
    client: httpx.AsyncClient, database_url: str, settings: Settings
) -> None:
    tasks = [
        await submit(client, type="echo", params={"value": i}, delay_seconds=600) for i in range(5)
    ]
    listener = _listener(client)

    async def wait(task_id: int) -> dict[str, Any]:
        response = await client.get(f"/tasks/{task_id}", params={"wait": 60})
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        return body

    waiters = [asyncio.create_task(wait(tasks[i % 5]["id"])) for i in range(500)]
    deadline = time.monotonic() + 30
    while listener.subscriptions < 500:
        assert time.monotonic() < deadline, f"only {listener.subscriptions} waiters subscribed"
        await asyncio.sleep(0.05)
    assert not any(w.done() for w in waiters)
    assert await _api_connections(database_url) <= settings.api_pool_size + 1
    for task in tasks:  # cancelling ends them: every waiter wakes
        assert (await client.delete(f"/tasks/{task['id']}")).status_code == 200
    answers = await asyncio.wait_for(asyncio.gather(*waiters), 30)
    assert {answer["status"] for answer in answers} == {"cancelled"}
    assert listener.subscriptions == 0


async def test_waiters_survive_a_lost_listener_connection(
    client: httpx.AsyncClient, database_url: str
) -> None:
    task = await submit(client, type="echo", params={"value": 1}, delay_seconds=600)
    listener = _listener(client)
    waiter = asyncio.create_task(client.get(f"/tasks/{task['id']}", params={"wait": 30}))
    while listener.subscriptions < 1:  # noqa: ASYNC110 - the listener has no event for this
        await asyncio.sleep(0.02)
    conn = await asyncpg.connect(database_url)
    try:  # only this test database's own listener backend
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() "
            "AND application_name = 'taskservice-api-listener'"
        )
        assert killed == 1
        # The end comes while the listener may still be reconnecting.
        await conn.execute("SELECT procrastinate_cancel_job_v1($1, true, false)", task["id"])
    finally:
        await conn.close()
    started = time.monotonic()
    response = await asyncio.wait_for(waiter, 30)
    assert response.json()["status"] == "cancelled"
    assert time.monotonic() - started < 20  # not the full wait: the fallback read saw it
    deadline = time.monotonic() + 20
    while not listener.connected.is_set():
        assert time.monotonic() < deadline, "the listener did not reconnect"
        await asyncio.sleep(0.05)


async def test_task_stream_shows_each_status_with_progress_in_between(
    settings: Settings, registry: TaskRegistry
) -> None:
    app = create_app(settings, registry=registry)
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        task = await submit(http, type="sleep", params={"seconds": 2}, delay_seconds=1)
        seen: list[tuple[str, Any]] = []
        async with (
            running_worker(settings, registry),
            http.stream("GET", f"/tasks/{task['id']}/events") as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            async for event in read_events(response):
                if event.event == "progress":
                    seen.append(("progress", event.data["progress"]["fraction"]))
                elif event.event == "status":
                    seen.append(("status", event.data["status"]))
                    assert event.id is not None
                else:
                    seen.append((event.event, event.data["status"]))
    kinds = [kind for kind, _ in seen]
    assert seen[0] == ("task", "pending")
    statuses = [value for kind, value in seen if kind == "status"]
    assert statuses == ["in_progress", "completed"]
    assert seen[-1] == ("task", "completed")  # and then the stream ended
    started = seen.index(("status", "in_progress"))
    ended = seen.index(("status", "completed"))
    fractions = [value for kind, value in seen[started:ended] if kind == "progress"]
    assert len(fractions) >= 2, seen
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert "progress" not in kinds[:started]


async def test_events_stream_filters_and_resumes_after_last_event_id(
    settings: Settings, registry: TaskRegistry
) -> None:
    app = create_app(settings, registry=registry)
    async with (
        serving(app) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as http,
        running_worker(settings, registry),
    ):
        seen: list[tuple[str | None, int, str]] = []
        async with http.stream("GET", "/events", params={"type": "echo"}) as response:
            events = read_events(response)
            opened = await anext(events)
            assert (opened.event, opened.data) == ("open", {"last_event_id": None})
            first = await submit(http, type="echo", params={"value": 1})
            await submit(http, type="sleep", params={"seconds": 0})  # filtered out
            async for event in events:
                assert event.data["type"] == "echo"
                seen.append((event.id, event.data["id"], event.data["status"]))
                if event.data["status"] == "completed":
                    break
        assert [(i, s) for _, i, s in seen] == [
            (first["id"], "pending"),
            (first["id"], "in_progress"),
            (first["id"], "completed"),
        ]
        # Reconnect after the first event: the two after it are replayed.
        resume_from = seen[0][0]
        assert resume_from is not None
        replayed: list[tuple[str | None, str]] = []
        async with http.stream(
            "GET", "/events", params={"type": "echo"}, headers={"Last-Event-ID": resume_from}
        ) as response:
            async for event in read_events(response):
                if event.event == "open":
                    continue
                replayed.append((event.id, event.data["status"]))
                if event.data["status"] == "completed":
                    break
        assert replayed == [(i, s) for i, _, s in seen[1:]]


async def test_the_stream_of_an_unknown_task_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/tasks/999999/events")
    assert response.status_code == 404
    assert response.json()["detail"][0]["loc"] == ["path", "task_id"]


async def test_the_stream_of_a_finished_task_is_its_final_state(
    client: httpx.AsyncClient,
) -> None:
    task = await submit(client, type="echo", params={"value": 1}, delay_seconds=600)
    await client.delete(f"/tasks/{task['id']}")
    response = await client.get(f"/tasks/{task['id']}/events")  # ends by itself
    assert response.headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in response.text.split("\n\n") if b]
    assert len(blocks) == 2
    assert all(b.startswith("event: task\n") for b in blocks)
    assert '"status":"cancelled"' in blocks[-1]
