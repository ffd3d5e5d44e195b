"""A worker whose metrics port is taken still runs tasks."""

from __future__ import annotations

import socket

import httpx

from taskservice.registry import TaskRegistry
from taskservice.settings import Settings
from tests.conftest import running_worker
from tests.helpers import submit, wait_for_status


async def test_worker_runs_when_its_metrics_port_is_taken(
    client: httpx.AsyncClient, settings: Settings, registry: TaskRegistry
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        crowded = settings.model_copy(update={"metrics_port": port, "host": "127.0.0.1"})
        async with running_worker(crowded, registry):
            task = await submit(client, type="echo", params={"value": 1})
            await wait_for_status(client, task["id"], "completed")


async def test_worker_serves_metrics_on_its_port(
    client: httpx.AsyncClient, settings: Settings, registry: TaskRegistry
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    served = settings.model_copy(update={"metrics_port": port, "host": "127.0.0.1"})
    async with running_worker(served, registry):
        task = await submit(client, type="echo", params={"value": 1})
        await wait_for_status(client, task["id"], "completed")
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    assert 'taskservice_tasks_completed_total{queue="default",type="echo"} 1.0' in text
