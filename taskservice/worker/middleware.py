"""Worker middleware that keeps each run's result or error for the transaction that ends it."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from procrastinate import JobContext
from procrastinate.job_context import AbortReason
from procrastinate.middleware import AsyncCallNext, WorkerMiddleware
from procrastinate.worker import Worker

from taskservice.metrics import Metrics
from taskservice.registry import RESERVED_PREFIX
from taskservice.worker.failures import WorkerShutdown, describe_error
from taskservice.worker.runs import Outcome, ServiceJobManager
from taskservice.worker.waiting import WaitForBatch


def _outcomes(worker: Worker) -> dict[int, Outcome]:
    """Where the run's end is picked up: the service's JobManager (see runs.py)."""
    job_manager = worker.app.job_manager
    if not isinstance(job_manager, ServiceJobManager):
        raise TypeError("the queue app must be built by build_queue_app (ServiceJobManager)")
    return job_manager.outcomes


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
    """Worker middleware that runs the job and keeps its result or error for the
    JobManager, which writes it in the transaction that ends the run (so a
    client that reads `completed` always finds the result, and a result that
    cannot be written never turns a success into a re-run); counts and times
    runs in `metrics`.

    Nothing here touches the database: in the failure branches, the task's own
    exception is what Procrastinate's retry decision sees."""
    # Each metric's child for a (type, queue): prometheus_client's labels()
    # validates and locks on every call, four calls per run.
    children: dict[tuple[str, str, str], Any] = {}

    def child(metric_name: str, labels: tuple[str, str]) -> Any:
        key = (metric_name, *labels)
        found = children.get(key)
        if found is None:
            assert metrics is not None
            found = children[key] = getattr(metrics, metric_name).labels(*labels)
        return found

    async def record_outcome(call_next: AsyncCallNext, context: JobContext, worker: Worker) -> Any:
        job_id = context.job.id
        assert job_id is not None
        outcomes = _outcomes(worker)
        observed = metrics if not context.job.task_name.startswith(RESERVED_PREFIX) else None
        labels = (
            context.job.task_name,
            observed.queue_label(context.job.queue) if observed else "",
        )

        def observe_latency(latency: float | None) -> None:
            if observed and latency is not None:
                child("start_latency", labels).observe(max(latency, 0.0))

        if observed:
            child("started", labels).inc()
        started = time.perf_counter()
        outcome = "completed"
        try:
            result = await call_next()
        except asyncio.CancelledError as exc:
            reason = context.abort_reason()
            outcomes[job_id] = Outcome(
                error=describe_error(exc, reason),
                uncharged=reason == AbortReason.SHUTDOWN,
                on_written=observe_latency,
            )
            outcome = _failure_outcome(exc, context)
            if reason == AbortReason.SHUTDOWN:
                # Procrastinate would end an async job cancelled by a shutdown as
                # `aborted`, for good; as an ordinary failure it is retried.
                raise WorkerShutdown(str(exc)) from exc
            raise
        except BaseException as exc:
            reason = context.abort_reason()
            outcomes[job_id] = Outcome(
                error=describe_error(exc, reason),
                uncharged=reason == AbortReason.SHUTDOWN or isinstance(exc, WorkerShutdown),
                on_written=observe_latency,
            )
            outcome = _failure_outcome(exc, context)
            raise
        else:
            if isinstance(result, WaitForBatch):
                # Neither completed nor failed yet: counted when its last run ends.
                outcomes[job_id] = Outcome(waiting=True)
                observed = None
                return None
            outcomes[job_id] = Outcome(result=json.dumps(result), on_written=observe_latency)
            return result
        finally:
            if observed:
                child(outcome, labels).inc()
                child("duration", labels).observe(time.perf_counter() - started)

    return record_outcome
