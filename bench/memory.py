"""Memory: resident size of an API and a worker process at rest and after N tasks.

`taskservice api` and `taskservice worker` (default settings) start on a fresh
database; their RSS (psutil) is read after start-up, at rest, then again once N
echo tasks have been POSTed (16 clients) and completed. The bare Procrastinate
worker runs the same number of jobs on its own database, for comparison.
"""

from __future__ import annotations

import asyncio
import time

import psutil

from bench import bare_worker
from bench.end_to_end import post_tasks
from bench.harness import (
    Databases,
    Process,
    Processes,
    Report,
    Target,
    connect,
    free_port,
    python_module,
    service_env,
    taskservice,
    wait_until,
)

MB = 1024 * 1024
REST = 3.0  # seconds after start-up before the first reading


def rss_mb(process: Process) -> float:
    """Resident size of the process and its children, MB."""
    root = psutil.Process(process.popen.pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / MB


async def _bare_load(url: str, n: int, worker: Process) -> None:
    await bare_worker.defer_many(url, n)
    async with connect(url) as conn:
        await wait_until(
            conn, "bare_succeeded", n, within=60 + n / 20, watch=[worker],
            task_name=bare_worker.TASK_NAME,
        )  # fmt: skip


async def _service_load(url: str, api: Process, worker: Process, n: int) -> None:
    await post_tasks(api.url, n)
    async with connect(url) as conn:
        await wait_until(
            conn, "service_completed", n, within=60 + n / 20, watch=[api, worker], type="echo"
        )


def run(dbs: Databases, procs: Processes, *, tasks: int) -> Report:
    with dbs.fresh("service") as url, dbs.fresh("bare") as bare_url:
        port = free_port()
        api = procs.start_http(
            "memory-api", taskservice("api", "--port", str(port)), service_env(url), port,
            "/health/ready",
        )  # fmt: skip
        worker = procs.start("memory-worker", taskservice("worker"), service_env(url))
        bare = procs.start("memory-bare", python_module("bench.bare_worker"), service_env(bare_url))
        time.sleep(REST)
        rest = {"api": rss_mb(api), "worker": rss_mb(worker), "bare": rss_mb(bare)}
        asyncio.run(_service_load(url, api, worker, tasks))
        asyncio.run(_bare_load(bare_url, tasks, bare))
        after = {"api": rss_mb(api), "worker": rss_mb(worker), "bare": rss_mb(bare)}
        procs.close()
    report = Report("memory", {"tasks": tasks, "rest seconds": REST})
    report.row("taskservice api, at rest", rest["api"], "MB")
    report.row(f"taskservice api, after {tasks:,} tasks", after["api"], "MB")
    report.row(
        "taskservice worker, at rest", rest["worker"], "MB", "bare Procrastinate", rest["bare"]
    )
    report.row(
        f"taskservice worker, after {tasks:,} tasks", after["worker"], "MB",
        "bare Procrastinate", after["bare"],
    )  # fmt: skip
    report.targets.append(
        Target(f"api under 150 MB after {tasks:,} tasks", after["api"], 150, at_least=False)
    )
    report.targets.append(
        Target(f"worker under 150 MB after {tasks:,} tasks", after["worker"], 150, at_least=False)
    )
    return report
