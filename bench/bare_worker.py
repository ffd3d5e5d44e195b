"""A bare Procrastinate worker with one `echo` task, the baseline for bench/latency.py."""

from __future__ import annotations

import os
from typing import Any

import procrastinate

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ["DATABASE_URL"])
)


@app.task(name="bare_echo", queue="bare")
async def bare_echo(value: Any) -> Any:
    return value


if __name__ == "__main__":
    app.run_worker(queues=["bare"], concurrency=4, fetch_job_polling_interval=1.0)
