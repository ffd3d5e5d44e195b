"""The service's one Procrastinate App: connector, task registration and worker defaults."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import procrastinate
from procrastinate import JobContext
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from taskservice.outcomes import record_outcome
from taskservice.registry import TaskRegistry, TaskType
from taskservice.retry import OPTIONS_KEY, ServiceRetryStrategy
from taskservice.settings import Settings

DEFAULT_QUEUE = "default"


def _validated_params(task: TaskType, kwargs: dict[str, Any]) -> BaseModel:
    kwargs.pop(OPTIONS_KEY, None)
    return task.params_model.model_validate(kwargs)


def _runner(task: TaskType) -> Callable[..., Any]:
    """The function Procrastinate calls: validate args, call the task, make the result JSON."""
    if task.is_async:

        async def run_async(context: JobContext, **kwargs: Any) -> Any:
            params = _validated_params(task, kwargs)
            args = (params, context) if task.wants_context else (params,)
            return to_jsonable_python(await task.func(*args))

        runner: Callable[..., Any] = run_async
    else:
        # Procrastinate runs sync functions in a thread; this must stay sync too.
        def run_sync(context: JobContext, **kwargs: Any) -> Any:
            params = _validated_params(task, kwargs)
            args = (params, context) if task.wants_context else (params,)
            return to_jsonable_python(task.func(*args))

        runner = run_sync
    runner.__name__ = runner.__qualname__ = f"run_{task.name}"
    return runner


def build_queue_app(
    settings: Settings, registry: TaskRegistry, *, pool_size: int
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
        kwargs={"application_name": "taskservice-queue"},
    )
    app = procrastinate.App(
        connector=connector,
        worker_defaults={
            "concurrency": settings.concurrency,
            "fetch_job_polling_interval": settings.poll_interval,
            "abort_job_polling_interval": settings.poll_interval,
            "update_heartbeat_interval": settings.worker_heartbeat_seconds,
            "shutdown_graceful_timeout": settings.shutdown_grace_seconds,
            "delete_jobs": "never",
            "worker_middleware": [record_outcome],
        },
    )
    for task in registry.values():
        app.task(
            name=task.name,
            pass_context=True,
            queue=DEFAULT_QUEUE,
            retry=ServiceRetryStrategy(task.retry),
        )(_runner(task))
    return app
