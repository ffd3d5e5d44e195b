"""Runs a Procrastinate worker for the service's task types."""

from __future__ import annotations

import logging

from procrastinate import App
from prometheus_client import start_http_server

from taskservice.metrics import Metrics
from taskservice.registry import INTERNAL_QUEUE, TaskRegistry
from taskservice.settings import Settings
from taskservice.worker.app import build_queue_app

logger = logging.getLogger(__name__)

# Beyond one connection per running job: the fetch loop, heartbeats, abort polls
# and result writes. LISTEN uses its own connection outside the pool.
WORKER_POOL_HEADROOM = 3


def worker_pool_size(settings: Settings) -> int:
    """psycopg connections a worker needs for `settings.concurrency` jobs."""
    return settings.concurrency + WORKER_POOL_HEADROOM


async def run_worker(
    settings: Settings,
    registry: TaskRegistry,
    *,
    install_signal_handlers: bool = True,
    metrics: Metrics | None = None,
) -> None:
    """Run jobs until stopped (SIGINT/SIGTERM, or cancelling this coroutine).

    Stopping is graceful: running jobs get `shutdown_grace_seconds` to finish,
    then are aborted and retried by another worker. Without `metrics` (given by
    `taskservice up`, whose API serves them), the worker serves its own on
    `settings.host:settings.metrics_port` when that port is set."""
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
        await _run(queue_app, settings, install_signal_handlers)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


async def _run(queue_app: App, settings: Settings, install_signal_handlers: bool) -> None:
    async with queue_app.open_async():
        if settings.queues:
            queues = [*settings.queues, INTERNAL_QUEUE]
            await queue_app.run_worker_async(
                queues=queues, install_signal_handlers=install_signal_handlers
            )
        else:  # Procrastinate's default: every queue.
            await queue_app.run_worker_async(install_signal_handlers=install_signal_handlers)
