"""Wraps a TaskType's function for Procrastinate: validated params, time limit, JSON result."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from procrastinate import JobContext
from procrastinate.exceptions import JobAborted
from procrastinate.job_context import AbortReason
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from taskservice.job_options import OPTIONS_KEY
from taskservice.registry import TaskType
from taskservice.settings import Settings
from taskservice.worker.failures import TaskTimeout
from taskservice.worker.progress import (
    ProgressReporter,
    close_from_thread,
    open_from_thread,
    with_progress,
)
from taskservice.worker.waiting import WaitForBatch


def _prepare(task: TaskType, kwargs: dict[str, Any]) -> tuple[BaseModel, float | None]:
    options = kwargs.pop(OPTIONS_KEY, None)
    limit = options.get("timeout_seconds") if isinstance(options, dict) else None
    if not isinstance(limit, int | float):
        limit = task.timeout_seconds
    return task.params_model.model_validate(kwargs), limit


def _call(
    task: TaskType,
    wants: tuple[bool, bool],
    params: BaseModel,
    context: JobContext,
    settings: Settings,
) -> Any:
    wants_context, wants_settings = wants
    args = (params, context) if wants_context else (params,)
    return task.func(*args, settings=settings) if wants_settings else task.func(*args)


def _job_id(context: JobContext) -> int:
    job_id = context.job.id
    assert job_id is not None  # a job being run has been stored
    return job_id


def make_runner(task: TaskType, settings: Settings) -> Callable[..., Any]:
    """The function Procrastinate calls for `task` (with pass_context=True).
    The type's own check runs again before each run: what the deployment allows
    may have changed since the submission (and DNS answers change)."""
    # Read once: inspecting a signature is slow.
    wants = (task.wants_context, task.wants_settings)
    if task.is_async:

        async def run_async(context: JobContext, **kwargs: Any) -> Any:
            params, limit = _prepare(task, kwargs)
            if task.check is not None:
                await task.check(params, settings)
            reporter = ProgressReporter(context.app.connector, _job_id(context))
            try:
                async with asyncio.timeout(limit) as deadline:
                    result = await _call(
                        task, wants, params, with_progress(context, reporter), settings
                    )
            except TimeoutError as exc:
                if limit is not None and deadline.expired():
                    raise TaskTimeout(limit) from exc
                raise
            finally:
                await reporter.close()
            if isinstance(result, WaitForBatch):
                return result  # for the middleware: the run ends, the task waits
            return to_jsonable_python(result)

        runner: Callable[..., Any] = run_async
    else:
        # Procrastinate runs sync functions in a thread, which nothing can stop
        # from outside: the time limit reaches the task through should_abort().
        def run_sync(context: JobContext, **kwargs: Any) -> Any:
            params, limit = _prepare(task, kwargs)
            if task.check is not None:
                asyncio.run(task.check(params, settings))
            deadline = None if limit is None else time.monotonic() + limit

            def timed_out() -> bool:
                return deadline is not None and time.monotonic() > deadline

            def abort_reason() -> AbortReason | None:
                return context.abort_reason() or (AbortReason.USER_REQUEST if timed_out() else None)

            reporter = open_from_thread(context.app.connector, _job_id(context))
            task_context = with_progress(context.evolve(abort_reason=abort_reason), reporter)
            try:
                result = _call(task, wants, params, task_context, settings)
            except JobAborted:
                if context.abort_reason() is None and timed_out():
                    raise TaskTimeout(limit or 0) from None
                raise
            finally:
                close_from_thread(reporter)
            if timed_out():  # it never checked: the result came too late
                raise TaskTimeout(limit or 0)
            return to_jsonable_python(result)

        runner = run_sync
    runner.__name__ = runner.__qualname__ = f"run_{task.name}"
    return runner
