"""Many clients posting at once: throughput, latency and 503s with the in-flight limit.

Starts `taskservice api` (no worker) on a fresh database, then `--clients` clients
each POST an echo task in a loop for `--seconds`; prints requests/s, answers by
status and latency percentiles of the accepted ones. Run it with
TASKSERVICE_MAX_REQUESTS_IN_FLIGHT set to compare limits.

Usage: python bench/overload.py [--clients 200] [--seconds 20] (DATABASE_URL: a
server to create the bench database on; default postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import psycopg

from bench.harness import free_port, with_db

BENCH_DB = f"taskservice_overload_{os.getpid()}"


@contextlib.contextmanager
def _fresh_database(server_url: str) -> Iterator[str]:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    try:
        yield with_db(server_url, BENCH_DB)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


async def _client(
    http: httpx.AsyncClient, until: float, statuses: collections.Counter[int], times: list[float]
) -> None:
    while time.monotonic() < until:
        start = time.perf_counter()
        try:
            response = await http.post("/tasks", json={"type": "echo", "params": {"value": 1}})
        except httpx.HTTPError:
            statuses[0] += 1
            continue
        statuses[response.status_code] += 1
        if response.status_code == 201:
            times.append(time.perf_counter() - start)
        elif response.status_code == 503:
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))


async def _run(port: int, clients: int, seconds: float) -> None:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60
    ) as http:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/health/ready")).status_code == 200:
                    break
            await asyncio.sleep(0.1)
        statuses: collections.Counter[int] = collections.Counter()
        times: list[float] = []
        until = time.monotonic() + seconds
        await asyncio.gather(*(_client(http, until, statuses, times) for _ in range(clients)))
    total = sum(statuses.values())
    limit = os.environ.get("TASKSERVICE_MAX_REQUESTS_IN_FLIGHT", "default (100)")
    print(f"{clients} clients for {seconds:g} s, max in flight {limit}:")
    print(f"  {total / seconds:.0f} answers/s; by status: {dict(sorted(statuses.items()))}")
    if len(times) >= 100:
        cuts = statistics.quantiles(times, n=100)
        print(f"  201 latency p50 {cuts[49] * 1000:.0f} ms, p99 {cuts[98] * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    with _fresh_database(server) as database_url:
        port = free_port()
        env = {**os.environ, "DATABASE_URL": database_url, "TASKSERVICE_LOG_LEVEL": "WARNING"}
        api = subprocess.Popen(
            [sys.executable, "-m", "taskservice", "api", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            asyncio.run(_run(port, args.clients, args.seconds))
        finally:
            api.terminate()
            api.wait(timeout=30)


if __name__ == "__main__":
    main()
