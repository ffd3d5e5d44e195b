"""End to end: N no-op tasks submitted, executed and their results stored.

- taskservice: `taskservice api` and `taskservice worker` (two processes, default
  settings); N `POST /tasks` from 16 concurrent clients (httpx, keep-alive), and,
  when the API has it, `POST /tasks/batch` of 100 tasks from 4 clients;
- Celery on Redis: a prefork worker of 2 processes, results in Redis, N `.delay`
  calls in a loop (Celery's client is synchronous);
- bare Procrastinate: its worker, N `defer_async` from 16 concurrent coroutines
  (Procrastinate stores no results).

Rate: N over first submit to last completion (the service's finished_at, the
last Procrastinate success event, the last Celery `date_done`). Each round runs
every peer once on fresh state, in turn; the medians are compared.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import time
from datetime import UTC
from typing import Any

import httpx

from bench import bare_worker
from bench.harness import (
    Databases,
    Process,
    Processes,
    Report,
    Target,
    connect,
    fetch,
    free_port,
    median,
    python_module,
    redis_url,
    service_env,
    taskservice,
    wait_until,
)

CLIENTS = 16
BATCH_SIZE = 100
BATCH_CLIENTS = 4


def has_batch_endpoint(base_url: str) -> bool:
    """Whether the API offers POST /tasks/batch (read from its OpenAPI document)."""
    document = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    return "post" in document.get("paths", {}).get("/tasks/batch", {})


async def post_tasks(base_url: str, count: int, clients: int = CLIENTS) -> float:
    """POST `count` echo tasks from `clients` concurrent clients; returns the epoch
    time of the first request."""
    numbers = iter(range(count))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as http:

        async def client() -> None:
            for value in numbers:
                response = await http.post(
                    "/tasks", json={"type": "echo", "params": {"value": value}}
                )
                response.raise_for_status()

        first = time.time()
        await asyncio.gather(*(client() for _ in range(clients)))
    return first


async def post_batches(base_url: str, count: int) -> float:
    """POST `count` echo tasks in batches of BATCH_SIZE from BATCH_CLIENTS clients."""
    starts = iter(range(0, count, BATCH_SIZE))
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as http:

        async def client() -> None:
            for start in starts:
                tasks = [
                    {"type": "echo", "params": {"value": v}}
                    for v in range(start, min(count, start + BATCH_SIZE))
                ]
                (await http.post("/tasks/batch", json={"tasks": tasks})).raise_for_status()

        first = time.time()
        await asyncio.gather(*(client() for _ in range(BATCH_CLIENTS)))
    return first


def _service_round(
    n: int, dbs: Databases, procs: Processes, batch: bool, within: float
) -> tuple[tuple[float, float] | None, bool]:
    """((end-to-end tasks/s, submissions/s), whether the API offers batches); no
    figures when batches were asked for and the API has none."""
    with dbs.fresh("service") as url:
        port = free_port()
        env = service_env(url)
        api = procs.start_http(
            "e2e-api", taskservice("api", "--port", str(port)), env, port, "/health/ready"
        )
        worker = procs.start("e2e-worker", taskservice("worker"), service_env(url))
        try:
            offered = has_batch_endpoint(api.url)
            if batch and not offered:
                return None, offered
            submit = post_batches(api.url, n) if batch else post_tasks(api.url, n)
            return asyncio.run(_service_measure(url, n, submit, [api, worker], within)), offered
        finally:
            procs.stop(worker)
            procs.stop(api)


async def _service_measure(
    url: str, n: int, submit: Any, watch: list[Process], within: float
) -> tuple[float, float]:
    first = await submit
    submitted = time.time()
    async with connect(url) as conn:
        await wait_until(conn, "service_completed", n, within=within, watch=watch, type="echo")
        (row,) = await fetch(conn, "service_span", type="echo")
    if row["tasks"] != n:
        raise RuntimeError(f"e2e: {row['tasks']} of {n} results stored")
    return n / (row["last_finish"] - first), n / (submitted - first)


def _bare_round(n: int, dbs: Databases, procs: Processes, within: float) -> tuple[float, float]:
    with dbs.fresh("bare") as url:
        worker = procs.start("e2e-bare", python_module("bench.bare_worker"), service_env(url))
        try:
            return asyncio.run(_bare_measure(url, n, worker, within))
        finally:
            procs.stop(worker)


async def _bare_measure(url: str, n: int, worker: Process, within: float) -> tuple[float, float]:
    app = bare_worker.make_app(url)
    numbers = iter(range(n))
    async with app.open_async():
        task = app.tasks[bare_worker.TASK_NAME]
        await asyncio.sleep(1)  # the worker's start-up, as the service's API health wait

        async def client() -> None:
            for value in numbers:
                await task.defer_async(value=value)

        first = time.time()
        await asyncio.gather(*(client() for _ in range(CLIENTS)))
        submitted = time.time()
    params: dict[str, Any] = {"task_name": bare_worker.TASK_NAME}
    async with connect(url) as conn:
        await wait_until(conn, "bare_succeeded", n, within=within, watch=[worker], **params)
        (row,) = await fetch(conn, "bare_span", **params)
    return n / (row["last_finish"] - first), n / (submitted - first)


def celery_missing() -> str | None:
    """Why the Celery peer cannot run here (None: it can)."""
    if importlib.util.find_spec("celery") is None:
        return "celery not installed (pip install -e '.[bench]')"
    import redis

    try:
        redis.Redis.from_url(redis_url(), socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        return f"no Redis at {redis_url()} ({exc})"
    return None


def _celery_round(n: int, procs: Processes, within: float) -> tuple[float, float]:
    import redis

    queue = f"bench_{os.getpid()}_{time.monotonic_ns()}"
    env = {**os.environ, "BENCH_CELERY_QUEUE": queue, "BENCH_REDIS_URL": redis_url()}
    os.environ["BENCH_CELERY_QUEUE"] = queue
    from bench import celery_peer

    celery_peer.app.conf.task_default_queue = queue
    command = python_module(
        "celery", "-A", "bench.celery_peer", "worker", "--pool=prefork", "--concurrency=2",
        "-Q", queue,
    )  # fmt: skip
    worker = procs.start("e2e-celery", command, env)
    ids: list[str] = []
    try:
        warm_up = celery_peer.bench_noop.apply_async((0,), queue=queue)
        ids.append(warm_up.id)
        warm_up.get(timeout=90)  # the worker is up
        first = time.time()
        ids += [celery_peer.bench_noop.apply_async((v,), queue=queue).id for v in range(n)]
        submitted = time.time()
        deadline = time.monotonic() + within
        results = [celery_peer.app.AsyncResult(i) for i in ids[1:]]
        last = 0.0
        for result in results:
            result.get(timeout=max(1.0, deadline - time.monotonic()))
            done = result.date_done
            stamp = done.replace(tzinfo=done.tzinfo or UTC).timestamp()
            last = max(last, stamp)
        return n / (last - first), n / (submitted - first)
    finally:
        procs.stop(worker)
        client = redis.Redis.from_url(redis_url())
        keys = [f"celery-task-meta-{i}" for i in ids]
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        # The queue and Kombu's bindings of it (key names vary with Kombu's version).
        client.delete(queue, *client.scan_iter(match=f"_kombu.binding*{queue}"))
        client.close()


def run(dbs: Databases, procs: Processes, *, tasks: int, rounds: int, celery: bool) -> Report:
    within = 60 + tasks / 20
    results: dict[str, list[tuple[float, float]]] = {"single": [], "batch": [], "bare": []}
    why_not = celery_missing() if celery else "--no-celery"
    use_celery = why_not is None
    if use_celery:
        results["celery"] = []
    offered = True
    for _ in range(rounds):
        single, offered = _service_round(tasks, dbs, procs, False, within)
        assert single is not None
        results["single"].append(single)
        if offered:
            batch, _ = _service_round(tasks, dbs, procs, True, within)
            assert batch is not None
            results["batch"].append(batch)
        if use_celery:
            results["celery"].append(_celery_round(tasks, procs, within))
        results["bare"].append(_bare_round(tasks, dbs, procs, within))

    def rate(kind: str, part: int = 0) -> float:
        return median([r[part] for r in results[kind]])

    report = Report(
        "e2e",
        {
            "tasks": tasks,
            "rounds": rounds,
            "taskservice": "taskservice api + taskservice worker (default settings)",
            "clients": CLIENTS,
            "batch": f"{BATCH_SIZE} per request, {BATCH_CLIENTS} clients",
            "celery": "prefork, 2 processes, Redis broker and results, .delay loop",
        },
        samples={f"{k} tasks/s": [r[0] for r in v] for k, v in results.items()},
    )
    celery_rate = rate("celery") if use_celery else None
    ratio = report.row(
        "POST /tasks x16 clients",
        rate("single"),
        "tasks/s",
        "Celery on Redis" if use_celery else None,
        celery_rate,
    )
    report.row("  same, submissions alone", rate("single", 1), "tasks/s")
    if results["batch"]:
        batch_ratio = report.row(
            f"POST /tasks/batch ({BATCH_SIZE})",
            rate("batch"),
            "tasks/s",
            "Celery on Redis" if use_celery else None,
            celery_rate,
        )
        report.row("  same, submissions alone", rate("batch", 1), "tasks/s")
    else:
        batch_ratio = None
        report.notes.append("POST /tasks/batch: not offered by this API (skipped)")
    if use_celery:
        report.row("  Celery, .delay alone", rate("celery", 1), "tasks/s")
    report.row(
        "POST /tasks x16 clients", rate("single"), "tasks/s", "bare Procrastinate", rate("bare")
    )
    report.row("  bare Procrastinate, defer alone", rate("bare", 1), "tasks/s")
    if use_celery:
        best = max(ratio or 0.0, batch_ratio or 0.0)
        report.targets.append(
            Target(
                "end to end through HTTP (best of single, batch) >= 2x Celery on Redis",
                best,
                2.0,
                at_least=True,
            )
        )
    else:
        report.notes.append(f"Celery peer skipped: {why_not}")
    return report
