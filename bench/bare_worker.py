"""The bare Procrastinate peer: one no-op task and a worker, nothing of the service.

Run as `python -m bench.bare_worker [--concurrency 4]` with DATABASE_URL set; the
bench defers `bench_noop` through `app` (or `batch_defer_async`) from its own process.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import procrastinate
from procrastinate.types import JSONDict

TASK_NAME = "bench_noop"
QUEUE = "bare"


def make_app(database_url: str) -> procrastinate.App:
    """A Procrastinate app with the no-op task, on `database_url`."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=database_url))

    @app.task(name=TASK_NAME, queue=QUEUE)
    async def bench_noop(value: Any = None) -> Any:
        return value

    return app


async def defer_many(database_url: str, count: int) -> None:
    """Queue `count` no-op jobs, a thousand per statement."""
    app = make_app(database_url)
    async with app.open_async():
        task = app.tasks[TASK_NAME]
        for start in range(0, count, 1000):
            jobs: list[JSONDict] = [{"value": v} for v in range(start, min(count, start + 1000))]
            await task.batch_defer_async(*jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    app = make_app(os.environ["DATABASE_URL"])
    # The same polling interval as the service's default (poll_interval 0.5 s).
    app.run_worker(queues=[QUEUE], concurrency=args.concurrency, fetch_job_polling_interval=0.5)


if __name__ == "__main__":
    main()
