"""The Celery peer: one no-op task on Redis (broker and results), as Celery documents it.

The worker runs as `celery -A bench.celery_peer worker --pool=prefork --concurrency=2
-Q <queue>`; BENCH_REDIS_URL and BENCH_CELERY_QUEUE (a queue of this run's own)
must be the same in the worker and in the process that sends tasks.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from bench.harness import redis_url

QUEUE = os.environ.get("BENCH_CELERY_QUEUE", "bench")

app = Celery("bench", broker=redis_url(), backend=redis_url())
app.conf.update(
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench_noop")  # type: ignore[untyped-decorator]  # Celery ships no types
def bench_noop(value: Any = None) -> Any:
    return value
