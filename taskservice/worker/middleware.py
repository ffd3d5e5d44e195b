"""Worker middleware that stores each run's result or error in the service's tables."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from procrastinate import BaseConnector, JobContext
from procrastinate.job_context import AbortReason
from procrastinate.middleware import AsyncCallNext, WorkerMiddleware
from procrastinate.worker import Worker

from taskservice.metrics import Metrics
from taskservice.registry import RESERVED_PREFIX
from taskservice.store import psycopg_driver as pg
from taskservice.worker.failures import WorkerShutdown, describe_error


async def _record(connector: BaseConnector, name: str, /, **params: Any) -> float | None:
    """Run a record_task_* query; return how long the run waited to start."""
    row = await pg.fetchrow(connector, name, **params)
    latency = row["start_latency"] if row else None
    return float(latency) if latency is not None else None


def _failure_outcome(exc: BaseException, context: JobContext) -> str:
    """`retried`, `failed` or `cancelled`: what Procrastinate is about to do with the run."""
    reason = context.abort_reason()
    if reason == AbortReason.SHUTDOWN or isinstance(exc, WorkerShutdown):
        return "retried"
    if reason == AbortReason.USER_REQUEST:
        return "cancelled"
    task = context.app.tasks.get(context.job.task_name)
    strategy = task.retry_strategy if task else None
    decision = strategy.get_retry_decision(exception=exc, job=context.job) if strategy else None
    return "retried" if decision else "failed"


def outcome_recorder(metrics: Metrics | None = None) -> WorkerMiddleware:
    """Worker middleware that runs the job, then stores its result or error (and
    counts and times it in `metrics`).

    The record is written before Procrastinate marks the job finished, so a
    client that reads `completed` always finds the result there. Start and
    finish times are kept by triggers on the job's status."""

    async def record_outcome(call_next: AsyncCallNext, context: JobContext, worker: Worker) -> Any:
        job_id = context.job.id
        assert job_id is not None
        connector = worker.app.connector
        observed = metrics if not context.job.task_name.startswith(RESERVED_PREFIX) else None
        labels = (
            context.job.task_name,
            observed.queue_label(context.job.queue) if observed else "",
        )
        if observed:
            observed.started.labels(*labels).inc()
        started = time.perf_counter()
        outcome, latency = "completed", None
        try:
            result = await call_next()
        except asyncio.CancelledError as exc:
            reason = context.abort_reason()
            error = describe_error(exc, reason)
            latency = await _record(connector, "record_task_failure", job_id=job_id, error=error)
            outcome = _failure_outcome(exc, context)
            if reason == AbortReason.SHUTDOWN:
                # Procrastinate would end an async job cancelled by a shutdown as
                # `aborted`, for good; as an ordinary failure it is retried.
                raise WorkerShutdown(str(exc)) from exc
            raise
        except BaseException as exc:
            error = describe_error(exc, context.abort_reason())
            latency = await _record(connector, "record_task_failure", job_id=job_id, error=error)
            outcome = _failure_outcome(exc, context)
            raise
        else:
            result_json = json.dumps(result)
            latency = await _record(
                connector, "record_task_success", job_id=job_id, result=result_json
            )
            return result
        finally:
            if observed:
                getattr(observed, outcome).labels(*labels).inc()
                observed.duration.labels(*labels).observe(time.perf_counter() - started)
                if latency is not None:
                    observed.start_latency.labels(*labels).observe(max(latency, 0.0))

    return record_outcome
