"""Submit-to-completed latency of one `echo` task: taskservice vs bare Procrastinate.

Both run side by side against one fresh database, alternating task by task:
- taskservice: `taskservice up` (API + worker, one process), the client POSTs
  /tasks and polls GET /tasks/{id} over loopback HTTP until `completed`;
- bare: a Procrastinate worker process with the same task, the client defers
  with Procrastinate and polls procrastinate_jobs until `succeeded`.

Usage: python bench/latency.py [--runs 20] (DATABASE_URL: a server to create the
bench database on; default postgresql://postgres@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import procrastinate
import psycopg

HERE = Path(__file__).resolve().parent
BENCH_DB = "taskservice_bench"
POLL = 0.002


def _with_db(url: str, dbname: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{dbname}"


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


def _client_app(database_url: str) -> procrastinate.App:
    """The client side of the bare case: defers `bare_echo` by name."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=database_url))
    app.task(name="bare_echo", queue="bare")(lambda value: value)
    return app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _service_once(http: httpx.AsyncClient, value: int) -> float:
    start = time.perf_counter()
    response = await http.post("/tasks", json={"type": "echo", "params": {"value": value}})
    task_id = response.json()["id"]
    while True:
        task = (await http.get(f"/tasks/{task_id}")).json()
        if task["status"] == "completed":
            assert task["result"] == value
            return time.perf_counter() - start
        await asyncio.sleep(POLL)


async def _bare_once(app: procrastinate.App, conn: psycopg.AsyncConnection, value: int) -> float:
    start = time.perf_counter()
    job_id = await app.configure_task("bare_echo", queue="bare").defer_async(value=value)
    while True:
        row = await (
            await conn.execute(
                "SELECT status::text FROM procrastinate_jobs WHERE id = %s", (job_id,)
            )
        ).fetchone()
        if row and row[0] == "succeeded":
            return time.perf_counter() - start
        await asyncio.sleep(POLL)


async def _server_side(conn: psycopg.AsyncConnection, runs: int) -> dict[str, list[float]]:
    """Deferred -> succeeded as the database saw it (procrastinate_events), per task."""
    cursor = await conn.execute(
        """
        SELECT j.task_name, EXTRACT(EPOCH FROM s.at - d.at)
        FROM procrastinate_jobs AS j
        JOIN procrastinate_events AS d ON d.job_id = j.id AND d.type = 'deferred'
        JOIN procrastinate_events AS s ON s.job_id = j.id AND s.type = 'succeeded'
        ORDER BY j.id DESC LIMIT %s
        """,
        (2 * runs,),
    )
    found: dict[str, list[float]] = {"echo": [], "bare_echo": []}
    for name, seconds in await cursor.fetchall():
        found[name].append(float(seconds))
    return found


@contextlib.contextmanager
def _processes(database_url: str, split: bool) -> Iterator[int]:
    """taskservice (queue `default`) and the bare worker (queue `bare`); yields the
    API's port. `split`: API and worker as two processes, as deployed at scale;
    otherwise `taskservice up`, one process for both."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TASKSERVICE_QUEUES": "default",
        "TASKSERVICE_METRICS_PORT": str(_free_port()),
    }
    command = [sys.executable, "-m", "taskservice"]

    def start(*args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            list(args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    processes = [start(sys.executable, str(HERE / "bare_worker.py"))]
    if split:
        processes.append(start(*command, "api", "--port", str(port)))
        processes.append(start(*command, "worker"))
    else:
        processes.append(start(*command, "up", "--port", str(port)))
    try:
        yield port
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


async def _run(database_url: str, port: int, runs: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/health")).status_code == 200:
                    break
            await asyncio.sleep(0.1)
        app = _client_app(database_url)
        async with (
            app.open_async(),
            await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn,
        ):
            await asyncio.sleep(2)  # let the bare worker start
            for i in range(3):  # warm-up, not counted
                await _service_once(http, i)
                await _bare_once(app, conn, i)
            service_times, bare_times = [], []
            for i in range(runs):
                service_times.append(await _service_once(http, i))
                bare_times.append(await _bare_once(app, conn, i))
            server_side = await _server_side(conn, runs)

    def ms(values: list[float]) -> str:
        q = statistics.quantiles(values, n=10)
        return f"median {statistics.median(values) * 1000:6.1f} ms  p90 {q[-1] * 1000:6.1f} ms"

    print(f"echo, submit -> completed, {runs} runs each, alternating:")
    print(f"  taskservice (HTTP POST + GET polls): {ms(service_times)}")
    print(f"  bare Procrastinate (defer + SELECT): {ms(bare_times)}")
    ratio = statistics.median(service_times) / statistics.median(bare_times)
    print(f"  ratio of medians taskservice/bare: {ratio:.2f}")
    print("deferred -> succeeded inside the database (procrastinate_events):")
    print(f"  taskservice worker: {ms(server_side['echo'])}")
    print(f"  bare worker:        {ms(server_side['bare_echo'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--split", action="store_true", help="run the API and the worker as two processes"
    )
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    with _fresh_database(server) as url:
        from taskservice.store.migrate import migrate

        asyncio.run(migrate(url))
        with _processes(url, args.split) as port:
            asyncio.run(_run(url, port, args.runs))


if __name__ == "__main__":
    main()
