"""Worker drain: N pending no-op tasks, `taskservice worker` vs a bare Procrastinate worker.

Each round takes a fresh database, queues N tasks with no worker running, starts
the worker and waits until all have succeeded. The rate is N over the time from
the first start to the last success as the database recorded them (the service's
started_at/finished_at in taskservice.tasks; Procrastinate's events for the bare
worker), so start-up and polling of the bench do not count. Rounds alternate
(service, bare, service, bare, ...) and the medians are compared.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench import bare_worker
from bench.harness import (
    Databases,
    Processes,
    Report,
    Target,
    connect,
    fetch,
    median,
    python_module,
    service_env,
    taskservice,
    wait_until,
)
from taskservice.models.tasks import TaskCreate
from taskservice.registry import load_registry
from taskservice.services import tasks as service
from taskservice.store import asyncpg_driver as database

CONCURRENCY = 4  # jobs at once, both workers (the figure; the service's default is 16)


async def submit_through_service(url: str, count: int, clients: int = 8) -> None:
    """Queue `count` echo tasks through the service layer (what POST /tasks runs)."""
    registry = load_registry()
    pool = await database.create_pool(url, max_size=clients)
    numbers = iter(range(count))

    async def client() -> None:
        for value in numbers:
            await service.submit_task(
                pool=pool,
                registry=registry,
                request=TaskCreate(type="echo", params={"value": value}),
            )

    try:
        await asyncio.gather(*(client() for _ in range(clients)))
    finally:
        await pool.close()


def _round(kind: str, n: int, dbs: Databases, procs: Processes, within: float) -> float:
    """One drain of `n` tasks on a fresh database; returns tasks/s."""
    with dbs.fresh("service" if kind == "taskservice" else "bare") as url:
        if kind == "taskservice":
            asyncio.run(submit_through_service(url, n))
            command = taskservice("worker", "--concurrency", str(CONCURRENCY))
            env = service_env(url)
            count, span, params = "service_completed", "service_span", {"type": "echo"}
        else:
            asyncio.run(bare_worker.defer_many(url, n))
            command = python_module("bench.bare_worker", "--concurrency", str(CONCURRENCY))
            env = service_env(url)
            count, span = "bare_succeeded", "bare_span"
            params = {"task_name": bare_worker.TASK_NAME}
        worker = procs.start(f"drain-{kind}", command, env)
        try:
            return asyncio.run(_measure(url, n, count, span, params, worker, within))
        finally:
            procs.stop(worker)


async def _measure(
    url: str, n: int, count: str, span: str, params: dict[str, Any], worker: Any, within: float
) -> float:
    async with connect(url) as conn:
        await wait_until(conn, count, n, within=within, watch=[worker], **params)
        (row,) = await fetch(conn, span, **params)
    if row["tasks"] != n:
        raise RuntimeError(f"drain: {row['tasks']} of {n} tasks recorded")
    return float(n / (row["last_finish"] - row["first_start"]))


def run(dbs: Databases, procs: Processes, *, tasks: int, rounds: int) -> Report:
    rates: dict[str, list[float]] = {"taskservice": [], "bare": []}
    within = 60 + tasks / 20  # far beyond any sane rate; a stuck worker fails the run
    for _ in range(rounds):
        for kind in rates:
            rates[kind].append(_round(kind, tasks, dbs, procs, within))
    report = Report(
        "drain",
        {"tasks": tasks, "rounds": rounds, "concurrency": CONCURRENCY, "task": "echo / no-op"},
        samples={f"{k} tasks/s": v for k, v in rates.items()},
    )
    ratio = report.row(
        "worker drain",
        median(rates["taskservice"]),
        "tasks/s",
        "bare Procrastinate worker",
        median(rates["bare"]),
    )
    report.targets.append(
        Target("drain >= 3x bare Procrastinate (aim 5x)", ratio or 0.0, 3.0, at_least=True)
    )
    report.notes.append(
        "first start to last success as the database recorded them; results stored "
        "(taskservice) and checked; median of the rounds, run alternately"
    )
    return report
