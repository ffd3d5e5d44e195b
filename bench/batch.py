"""1,000 tasks in one POST /tasks/batch against 1,000 POST /tasks, side by side.

Runs `taskservice api` as a process on a fresh database (no worker: only the
submission is timed), then for each round submits N tasks one request at a
time, N tasks over 10 concurrent connections, and N tasks in one batch.

Usage: python -m bench.batch [--tasks 1000] [--rounds 3]
(DATABASE_URL: a server to create the bench database on; default
postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import psycopg

from bench.harness import free_port as _free_port
from bench.harness import with_db as _with_db
from taskservice.store.migrate import migrate

BENCH_DB = "taskservice_bench_batch"


@contextlib.contextmanager
def _fresh_database(server_url: str) -> Iterator[str]:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    try:
        yield _with_db(server_url, BENCH_DB)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


@contextlib.contextmanager
def _api(database_url: str) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "TASKSERVICE_MIGRATE_ON_START": "false"}
    process = subprocess.Popen(
        [sys.executable, "-m", "taskservice", "api", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health/live").status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the API did not start")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def _body(i: int) -> dict[str, object]:
    return {"type": "echo", "params": {"value": i}}


async def _one_by_one(http: httpx.AsyncClient, n: int, concurrency: int) -> float:
    semaphore = asyncio.Semaphore(concurrency)

    async def post(i: int) -> None:
        async with semaphore:
            response = await http.post("/tasks", json=_body(i))
            response.raise_for_status()

    start = time.perf_counter()
    await asyncio.gather(*(post(i) for i in range(n)))
    return time.perf_counter() - start


async def _batch(http: httpx.AsyncClient, n: int) -> float:
    start = time.perf_counter()
    response = await http.post("/tasks/batch", json={"tasks": [_body(i) for i in range(n)]})
    response.raise_for_status()
    assert len(response.json()["ids"]) == n
    return time.perf_counter() - start


async def _measure(base: str, n: int, rounds: int) -> None:
    results: dict[str, list[float]] = {"sequential": [], "concurrent (10)": [], "batch": []}
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        await _batch(http, 10)  # warm up
        for _ in range(rounds):
            results["sequential"].append(await _one_by_one(http, n, 1))
            results["concurrent (10)"].append(await _one_by_one(http, n, 10))
            results["batch"].append(await _batch(http, n))
    batch = statistics.median(results["batch"])
    print(f"{n:,} echo tasks submitted to `taskservice api`, median of {rounds} rounds:")
    for label, times in results.items():
        median = statistics.median(times)
        print(
            f"  {label:18} {median * 1000:9.1f} ms  {n / median:8.0f} tasks/s"
            f"  ({median / batch:5.1f}x the batch)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    with _fresh_database(server) as url:
        asyncio.run(migrate(url))
        with _api(url) as base:
            asyncio.run(_measure(base, args.tasks, args.rounds))


if __name__ == "__main__":
    main()
