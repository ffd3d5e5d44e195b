"""GET /workers, /stats/throughput and /me: what the dashboard reads besides tasks."""

from __future__ import annotations

import os
import socket

import httpx

from taskservice.registry import TaskRegistry
from taskservice.settings import Settings
from tests.conftest import running_worker
from tests.helpers import submit, wait_for_status


async def test_throughput_counts_tasks_ended_per_minute(
    client: httpx.AsyncClient, worker: None
) -> None:
    done = await submit(client, type="echo", params={"value": 1})
    failed = await submit(client, type="fail", params={}, max_attempts=1)
    await wait_for_status(client, done["id"], "completed")
    await wait_for_status(client, failed["id"], "failed")

    response = await client.get("/stats/throughput", params={"minutes": 5})
    assert response.status_code == 200, response.text
    minutes = response.json()["minutes"]
    assert len(minutes) == 5  # every minute, zeros included, the current one last
    assert sum(m["completed"] for m in minutes) == 1  # the service's own jobs left out
    assert sum(m["failed"] for m in minutes) == 1
    assert minutes[-1]["completed"] + minutes[-2]["completed"] == 1
    assert (await client.get("/stats/throughput", params={"minutes": 0})).status_code == 422


async def test_workers_lists_each_with_its_heartbeat(
    client: httpx.AsyncClient, worker: None
) -> None:
    workers = (await client.get("/workers")).json()
    assert len(workers) == 1
    assert workers[0]["alive"] is True
    assert workers[0]["heartbeat_age_seconds"] < 60
    assert workers[0]["running"] == 0
    # What Procrastinate does not keep: where it runs and what it serves.
    assert workers[0]["pid"] == os.getpid()
    assert workers[0]["hostname"] == socket.gethostname()
    assert workers[0]["concurrency"] == 4
    assert workers[0]["queues"] is None  # every queue


async def test_workers_show_the_queues_they_serve(
    client: httpx.AsyncClient, settings: Settings, registry: TaskRegistry
) -> None:
    only = settings.model_copy(update={"queues": ["reports"], "concurrency": 2})
    async with running_worker(only, registry):
        [worker] = (await client.get("/workers")).json()
    assert worker["queues"] == ["reports", "taskservice"]
    assert worker["concurrency"] == 2


async def test_me_in_open_mode(client: httpx.AsyncClient) -> None:
    me = (await client.get("/me")).json()
    assert me == {"name": "(open mode)", "scopes": ["read", "submit", "admin"], "open_mode": True}


async def test_dashboard_page_and_assets(client: httpx.AsyncClient) -> None:
    page = await client.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for name in ("dashboard.js", "events.js", "dashboard.css"):
        asset = await client.get(f"/dashboard/assets/{name}")
        assert asset.status_code == 200, name
    assert (await client.get("/dashboard/assets/index.html")).status_code == 404
    assert (await client.get("/dashboard/assets/..%2F..%2Fapp.py")).status_code == 404
