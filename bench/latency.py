"""Latency with idle workers: submit -> start and submit -> completed, p50/p95/p99.

taskservice (`taskservice api` + `taskservice worker`, default settings; tasks
POSTed over loopback HTTP) and a bare Procrastinate worker (jobs deferred with
Procrastinate) run side by side on two databases; tasks go one at a time,
alternating between the two, each waited for before the next, so every worker is
idle when its task arrives. The times are the database's: the task's created_at,
started_at and finished_at (taskservice.tasks) and the job's deferred, started and
succeeded events (bare). Then `scheduled` tasks (delay 1 s, submitted together):
how long after their time they started (target: within 1 s).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import httpx
import procrastinate

from bench import bare_worker
from bench.harness import (
    Databases,
    Process,
    Processes,
    Report,
    Target,
    connect,
    fetch,
    fetchval,
    free_port,
    percentile,
    python_module,
    service_env,
    taskservice,
)

WARM_UP = 5
SCHEDULED = 20
POLL = 0.002


async def _wait(conn: asyncpg.Connection, query: str, key: int, done: str, watch: Process) -> None:
    deadline = time.monotonic() + 60
    while await fetchval(conn, query, id=key) != done:
        if time.monotonic() > deadline:
            watch.check_alive()
            raise TimeoutError(f"{query} {key}: not {done} after 60 s")
        await asyncio.sleep(POLL)


async def _measure(
    service_url: str, bare_url: str, api: Process, workers: list[Process], tasks: int
) -> tuple[dict[str, list[float]], list[float]]:
    bare_app: procrastinate.App = bare_worker.make_app(bare_url)
    ids: dict[str, list[int]] = {"service": [], "bare": []}
    async with (
        httpx.AsyncClient(base_url=api.url, timeout=30) as http,
        bare_app.open_async(),
        connect(service_url) as service_db,
        connect(bare_url) as bare_db,
    ):
        task = bare_app.tasks[bare_worker.TASK_NAME]
        await asyncio.sleep(1)  # both workers listening
        for i in range(WARM_UP + tasks):
            response = await http.post("/tasks", json={"type": "echo", "params": {"value": i}})
            response.raise_for_status()
            service_id = int(response.json()["id"])
            await _wait(service_db, "service_status", service_id, "completed", workers[0])
            bare_id = await task.defer_async(value=i)
            await _wait(bare_db, "job_status", bare_id, "succeeded", workers[1])
            if i >= WARM_UP:
                ids["service"].append(service_id)
                ids["bare"].append(bare_id)
        await asyncio.sleep(0.5)  # idle again before the scheduled ones
        scheduled = []
        for i in range(SCHEDULED):
            body = {"type": "echo", "params": {"value": i}, "delay_seconds": 1 + i * 0.05}
            response = await http.post("/tasks", json=body)
            response.raise_for_status()
            scheduled.append(int(response.json()["id"]))
        for key in scheduled:
            await _wait(service_db, "service_status", key, "completed", workers[0])
        found: dict[str, list[float]] = {}
        for name, conn, query in (
            ("service", service_db, "service_latencies"),
            ("bare", bare_db, "bare_latencies"),
        ):
            rows = await fetch(conn, query, ids=ids[name])
            found[f"{name} start"] = [r["to_start"] for r in rows]
            found[f"{name} done"] = [r["to_done"] for r in rows]
        lateness = [r[0] for r in await fetch(service_db, "service_lateness", ids=scheduled)]
    return found, lateness


def run(dbs: Databases, procs: Processes, *, tasks: int) -> Report:
    with dbs.fresh("service") as service_url, dbs.fresh("bare") as bare_url:
        port = free_port()
        api = procs.start_http(
            "latency-api",
            taskservice("api", "--port", str(port)),
            service_env(service_url),
            port,
            "/health/ready",
        )
        workers = [
            procs.start("latency-worker", taskservice("worker"), service_env(service_url)),
            procs.start("latency-bare", python_module("bench.bare_worker"), service_env(bare_url)),
        ]
        found, lateness = asyncio.run(_measure(service_url, bare_url, api, workers, tasks))
        procs.close()
    report = Report(
        "latency",
        {"tasks": tasks, "idle workers": True, "warm-up": WARM_UP, "scheduled": SCHEDULED},
        samples={**found, "scheduled lateness": lateness},
    )
    ms: dict[str, Any] = {}
    for what in ("start", "done"):
        label = "submit -> start" if what == "start" else "submit -> completed"
        for p in (50, 95, 99):
            value = percentile(found[f"service {what}"], p) * 1000
            peer = percentile(found[f"bare {what}"], p) * 1000
            report.row(f"{label} p{p}", value, "ms", "bare Procrastinate", peer)
            ms[f"{what} p{p}"] = value
    late = max(lateness) if lateness else float("nan")
    report.row("scheduled: start after its time, p50", percentile(lateness, 50) * 1000, "ms")
    report.row("scheduled: start after its time, max", late * 1000, "ms")
    report.targets.append(
        Target("submit -> start p50 < 10 ms", ms["start p50"], 10, at_least=False)
    )
    report.targets.append(Target("scheduled start within 1 s (max, s)", late, 1.0, at_least=False))
    report.notes.append("retried tasks' start is not measured here")
    return report
