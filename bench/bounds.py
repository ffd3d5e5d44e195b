"""Measures the service's stated bounds with its default settings.

- abort latency: DELETE on a running `sleep` until the task reads `cancelled`;
- rescue time: a worker killed with SIGKILL mid-task until another worker
  starts the task again (defaults: heartbeat 10 s, stalled after 30 s, rescue
  every 10 s, so the bound is about 40 s).

Usage: python -m bench.bounds [--aborts 10] [--skip-rescue]
(DATABASE_URL: a server to create the bench database on; default
postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import httpx

from bench.harness import Databases, server_url
from taskservice.api.app import create_app
from taskservice.settings import Settings


def _worker(database_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": database_url, "TASKSERVICE_MIGRATE_ON_START": "false"}
    return subprocess.Popen(
        [sys.executable, "-m", "taskservice", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _wait(
    http: httpx.AsyncClient, task_id: int, status: str, within: float
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        task: dict[str, Any] = (await http.get(f"/tasks/{task_id}")).json()
        if task["status"] == status:
            return task
        await asyncio.sleep(0.01)
    raise TimeoutError(f"task {task_id} not {status} after {within} s")


async def _measure(database_url: str, aborts: int, rescue: bool) -> None:
    app = create_app(Settings(database_url=database_url, migrate_on_start=False))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench") as http,
    ):
        worker = await asyncio.to_thread(_worker, database_url)
        latencies = []
        try:
            for _ in range(aborts):
                task = (
                    await http.post("/tasks", json={"type": "sleep", "params": {"seconds": 60}})
                ).json()
                await _wait(http, task["id"], "in_progress", 30)
                start = time.perf_counter()
                await http.delete(f"/tasks/{task['id']}")
                await _wait(http, task["id"], "cancelled", 30)
                latencies.append(time.perf_counter() - start)
            print(
                f"abort latency, {aborts} running sleeps: median "
                f"{statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
            )
            if not rescue:
                return
            task = (
                await http.post("/tasks", json={"type": "sleep", "params": {"seconds": 1}})
            ).json()
            await _wait(http, task["id"], "in_progress", 30)
            worker.send_signal(signal.SIGKILL)
            killed = datetime.now().astimezone()
            worker.wait()
            worker = await asyncio.to_thread(_worker, database_url)
            done = await _wait(http, task["id"], "completed", 120)
            restarted = datetime.fromisoformat(done["attempt_history"][1]["started_at"])
            print(
                f"rescue after SIGKILL (default settings): task restarted "
                f"{(restarted - killed).total_seconds():.1f} s after the kill"
            )
        finally:
            worker.terminate()
            await asyncio.to_thread(worker.wait)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aborts", type=int, default=10)
    parser.add_argument("--skip-rescue", action="store_true")
    args = parser.parse_args()
    dbs = Databases(server_url())
    try:
        with dbs.fresh("service") as url:
            asyncio.run(_measure(url, args.aborts, not args.skip_rescue))
    finally:
        dbs.close()


if __name__ == "__main__":
    main()
