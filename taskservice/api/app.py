"""The HTTP API: `create_app(settings)` builds it from the routers and the error handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from taskservice.api.deps import Resources
from taskservice.api.errors import install_error_handlers
from taskservice.api.limits import limit_requests
from taskservice.api.openapi import document_task_types
from taskservice.api.request_metrics import observe_requests
from taskservice.api.routes import (
    activity,
    batches,
    dashboard,
    events,
    health,
    keys,
    queues,
    schedules,
    tasks,
)
from taskservice.metrics import Metrics
from taskservice.registry import TaskRegistry, load_registry
from taskservice.services.health import WorkerProbe
from taskservice.services.keys import KeyCache, prepare_access
from taskservice.services.schedules import code_schedules, sync_code_schedules
from taskservice.services.submissions import GroupSubmitter
from taskservice.settings import Settings
from taskservice.store import asyncpg_driver as db
from taskservice.store.listener import EventListener
from taskservice.store.migrate import migrate_as_configured


def create_app(
    settings: Settings,
    *,
    registry: TaskRegistry | None = None,
    metrics: Metrics | None = None,
    worker: WorkerProbe | None = None,
) -> FastAPI:
    """The API on `settings.database_url` (resolved: see store.embedded.resolve_database_url).

    `worker` is the in-process worker of `taskservice up`: the API is ready only
    while that worker can take work. A standalone API leaves it None."""
    if settings.database_url is None:
        raise ValueError("create_app needs settings with a database_url")
    database_url = settings.database_url
    task_registry = registry or load_registry(settings.task_modules)
    app_metrics = metrics or Metrics.from_settings(settings)
    secret = settings.bootstrap_api_key
    bootstrap_key = secret.get_secret_value() if secret else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await migrate_as_configured(settings)
        pool = await db.create_pool(
            database_url,
            max_size=settings.api_pool_size,
            acquire_timeout=settings.api_acquire_timeout_seconds,
            command_timeout=settings.api_command_timeout_seconds,
            session_settings=settings.session_guards(),
        )
        listener = EventListener(database_url)
        submitter: GroupSubmitter | None = None
        try:
            await listener.start()
            app.state.listener = listener
            app.state.pool = pool
            app.state.registry = task_registry
            app.state.settings = settings
            app.state.metrics = app_metrics
            app.state.worker = worker
            key_cache = KeyCache(
                ttl_seconds=settings.api_key_cache_seconds, trusted=listener.connected.is_set
            )
            listener.watch("api_keys", key_cache.invalidate)
            app.state.key_cache = key_cache
            submitter = GroupSubmitter(pool)
            app.state.resources = Resources(
                pool=pool,
                listener=listener,
                registry=task_registry,
                settings=settings,
                metrics=app_metrics,
                submitter=submitter,
            )
            await prepare_access(pool=pool, host=settings.host, bootstrap_key=bootstrap_key)
            await sync_code_schedules(pool=pool, schedules=code_schedules(settings, task_registry))
            yield
        finally:
            if submitter is not None:
                await submitter.close()
            await listener.stop()
            await pool.close()

    app = FastAPI(
        title="taskservice",
        summary="Background tasks over REST, queued in PostgreSQL by Procrastinate.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    limit_requests(app, settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        )
    observe_requests(app, app_metrics)
    for routes in (batches, tasks, events, queues, schedules, health, activity, keys, dashboard):
        app.include_router(routes.router)
    document_task_types(app, task_registry)
    return app
