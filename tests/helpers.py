"""Small helpers shared by the integration tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx


async def submit(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/tasks", json=body)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


async def wait_for_status(
    client: httpx.AsyncClient, task_id: int, *statuses: str, within: float = 10.0
) -> dict[str, Any]:
    """Poll GET /tasks/{id} until its status is one of `statuses` (for at most `within` seconds)."""
    deadline = time.monotonic() + within
    while True:
        response = await client.get(f"/tasks/{task_id}")
        assert response.status_code == 200, response.text
        task: dict[str, Any] = response.json()
        if task["status"] in statuses:
            return task
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} still {task['status']} after {within}s: {task}")
        await asyncio.sleep(0.05)
