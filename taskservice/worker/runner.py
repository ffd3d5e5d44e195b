"""Runs a Procrastinate worker for the service's task types."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from procrastinate import App
from prometheus_client import start_http_server

from taskservice.errors import WorkerStopped
from taskservice.metrics import Metrics
from taskservice.registry import INTERNAL_QUEUE, TaskRegistry
from taskservice.settings import Settings
from taskservice.store import psycopg_driver as pg
from taskservice.worker.app import build_queue_app
from taskservice.worker.resilient import DatabaseLink, ResilientWorker

logger = logging.getLogger(__name__)

# Beyond one connection per running job: the claims in flight (two), the batch
# of run ends being written, abort polls. LISTEN and the heartbeat thread use
# connections of their own, outside the pool.
WORKER_POOL_HEADROOM = 4
# How long the reconnection probe waits for a fresh connection to answer.
PROBE_TIMEOUT_SECONDS = 5.0


def worker_pool_size(settings: Settings) -> int:
    """psycopg connections a worker needs for `settings.concurrency` jobs."""
    return settings.concurrency + WORKER_POOL_HEADROOM


async def run_worker(
    settings: Settings,
    registry: TaskRegistry,
    *,
    install_signal_handlers: bool = True,
    metrics: Metrics | None = None,
    link: DatabaseLink | None = None,
) -> None:
    """Run jobs until stopped (SIGINT/SIGTERM, or cancelling this coroutine).

    Stopping is graceful: running jobs get `shutdown_grace_seconds` to finish,
    then are aborted and retried by another worker. Without `metrics` (given by
    `taskservice up`, whose API serves them), the worker serves its own on
    `settings.host:settings.metrics_port` when that port is set.

    Database outages are ridden through (see worker.resilient); `link` shows the
    worker's state to others. Raises WorkerStopped when the worker stopped on its
    own: the database unreachable past `worker_db_grace_seconds`, or a failure."""
    server = None
    if metrics is None and settings.metrics_port is not None:
        metrics = Metrics.from_settings(settings)
        try:
            server, _ = start_http_server(
                settings.metrics_port, addr=settings.host, registry=metrics.registry
            )
        except OSError as exc:
            # Several workers on one machine: the first takes the port. A worker
            # without metrics still works; say how to give each its own.
            logger.warning(
                "metrics port %s:%s unavailable (%s); this worker serves no metrics: "
                "give each worker its own TASKSERVICE_METRICS_PORT",
                settings.host,
                settings.metrics_port,
                exc,
            )
    queue_app = build_queue_app(
        settings, registry, pool_size=worker_pool_size(settings), metrics=metrics
    )
    try:
        await _run(queue_app, settings, install_signal_handlers, link or DatabaseLink())
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


async def _run(
    queue_app: App, settings: Settings, install_signal_handlers: bool, link: DatabaseLink
) -> None:
    database_url = settings.database_url
    assert database_url is not None

    async def probe() -> None:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            await pg.ping(database_url)

    # Sync task functions run in the loop's default executor (asyncio's default
    # is min(32, cores + 4) threads): as many threads as jobs, so that a claimed
    # sync job never waits for a thread while it counts as running.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=settings.concurrency + 4, thread_name_prefix="task")
    )
    options: dict[str, Any] = {
        **queue_app.worker_defaults,
        "install_signal_handlers": install_signal_handlers,
    }
    if settings.queues:
        options["queues"] = [*settings.queues, INTERNAL_QUEUE]
    # else Procrastinate's default: every queue.
    worker = ResilientWorker(
        app=queue_app,
        link=link,
        probe=probe,
        grace_seconds=settings.worker_db_grace_seconds,
        log_successes=settings.log_successes,
        **options,
    )
    try:
        async with queue_app.open_async():
            queue_app.perform_import_paths()  # type: ignore[no-untyped-call]  # untyped upstream
            await worker.run()
    except BaseException as exc:
        link.stopped = worker.gave_up or worker.failure or f"{type(exc).__name__}: {exc}"
        if worker.gave_up is not None:
            raise WorkerStopped(worker.gave_up) from exc
        raise
    reason = worker.gave_up or worker.failure
    if reason is not None:
        link.stopped = reason
        raise WorkerStopped(reason)
    link.stopped = "stopped on request"
