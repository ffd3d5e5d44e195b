"""The service's one Procrastinate App: connector, task registration and worker defaults."""

from __future__ import annotations

import procrastinate

from taskservice.metrics import Metrics
from taskservice.registry import DEFAULT_QUEUE, INTERNAL_QUEUE, TaskRegistry
from taskservice.services.schedules import code_schedules
from taskservice.settings import Settings
from taskservice.store import psycopg_driver as pg
from taskservice.worker.callbacks import register_callbacks
from taskservice.worker.completer import BatchCompleter
from taskservice.worker.dispatcher import register_dispatcher
from taskservice.worker.invoke import make_runner
from taskservice.worker.middleware import outcome_recorder
from taskservice.worker.rescue import register_rescue
from taskservice.worker.retry import ServiceRetryStrategy
from taskservice.worker.runs import ServiceJobManager


def _session_options(settings: Settings) -> str:
    """libpq `options` with the session guards, after any the database URL gives
    (a keyword argument replaces the URL's own)."""
    assert settings.database_url is not None
    return pg.session_options(settings.database_url, settings.session_guards())


# How long a worker's caller waits for a pooled connection before the database
# counts as unreachable, and how long the pool retries one lost connection.
POOL_WAIT_SECONDS = 5.0
POOL_RECONNECT_SECONDS = 3.0


def build_queue_app(
    settings: Settings,
    registry: TaskRegistry,
    *,
    pool_size: int,
    metrics: Metrics | None = None,
) -> procrastinate.App:
    """A Procrastinate App on `settings.database_url` with every task type registered.

    Worker defaults live here so `taskservice worker` and `procrastinate worker`
    behave alike: results recorded, finished jobs kept, short polling."""
    if settings.database_url is None:
        raise ValueError("database_url must be resolved before building the queue app")
    connector = procrastinate.PsycopgConnector(
        conninfo=settings.database_url,
        min_size=1,
        max_size=pool_size,
        # A worker rides through outages itself (worker.resilient); the pool's
        # own retries (doubling delays up to 5 minutes) would only delay its
        # return, and a caller waiting 30 s for a connection delays noticing.
        timeout=POOL_WAIT_SECONDS,
        reconnect_timeout=POOL_RECONNECT_SECONDS,
        kwargs={
            "application_name": "taskservice-queue",
            "options": _session_options(settings),
            "connect_timeout": 5,
        },
        pool_factory=pg.purging_pool,
    )
    app = procrastinate.App(
        connector=connector,
        worker_defaults={
            "concurrency": settings.concurrency,
            "fetch_job_polling_interval": settings.poll_interval,
            "abort_job_polling_interval": settings.poll_interval,
            "update_heartbeat_interval": settings.worker_heartbeat_seconds,
            "stalled_worker_timeout": settings.stalled_after_seconds,
            "shutdown_graceful_timeout": settings.shutdown_grace_seconds,
            "delete_jobs": "never",
            "worker_middleware": [outcome_recorder(metrics)],
        },
    )
    app.job_manager = ServiceJobManager(
        connector,
        conninfo=settings.database_url,
        heartbeat_seconds=settings.worker_heartbeat_seconds,
        finish_retry_seconds=settings.finish_retry_seconds,
        queues=[*settings.queues, INTERNAL_QUEUE] if settings.queues else None,
        concurrency=settings.concurrency,
        completer=BatchCompleter(connector, keep_trying_seconds=settings.finish_retry_seconds),
    )
    for task in registry.values():
        app.task(
            name=task.name,
            pass_context=True,
            queue=DEFAULT_QUEUE,
            retry=ServiceRetryStrategy(task.retry),
        )(make_runner(task, settings))
    register_rescue(
        app,
        every_seconds=settings.rescue_interval_seconds,
        stalled_after_seconds=settings.stalled_after_seconds,
        max_worker_losses=settings.max_worker_losses,
    )
    register_dispatcher(app, registry, code_schedules(settings, registry))
    register_callbacks(app, settings)
    return app
