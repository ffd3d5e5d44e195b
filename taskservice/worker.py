"""Runs a Procrastinate worker for the service's task types."""

from __future__ import annotations

from taskservice.queue import build_queue_app
from taskservice.registry import INTERNAL_QUEUE, TaskRegistry
from taskservice.settings import Settings

# Beyond one connection per running job: the fetch loop, heartbeats, abort polls
# and result writes. LISTEN uses its own connection outside the pool.
WORKER_POOL_HEADROOM = 3


def worker_pool_size(settings: Settings) -> int:
    """psycopg connections a worker needs for `settings.concurrency` jobs."""
    return settings.concurrency + WORKER_POOL_HEADROOM


async def run_worker(
    settings: Settings, registry: TaskRegistry, *, install_signal_handlers: bool = True
) -> None:
    """Run jobs until stopped (SIGINT/SIGTERM, or cancelling this coroutine).

    Stopping is graceful: running jobs get `shutdown_grace_seconds` to finish,
    then are aborted and retried by another worker."""
    queue_app = build_queue_app(settings, registry, pool_size=worker_pool_size(settings))
    async with queue_app.open_async():
        if settings.queues:
            queues = [*settings.queues, INTERNAL_QUEUE]
            await queue_app.run_worker_async(
                queues=queues, install_signal_handlers=install_signal_handlers
            )
        else:  # Procrastinate's default: every queue.
            await queue_app.run_worker_async(install_signal_handlers=install_signal_handlers)
