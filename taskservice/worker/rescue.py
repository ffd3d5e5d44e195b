"""The periodic job that rescues tasks whose worker died (SIGKILL, lost machine)."""

from __future__ import annotations

import logging

import procrastinate
from procrastinate import JobContext, exceptions
from procrastinate.jobs import Status

from taskservice.registry import INTERNAL_PRIORITY, INTERNAL_QUEUE
from taskservice.store import psycopg_driver as pg
from taskservice.worker.failures import WorkerLost, describe_error

logger = logging.getLogger(__name__)

RESCUE_TASK = "taskservice.rescue_stalled_jobs"


def register_rescue(
    app: procrastinate.App, *, every_seconds: int, stalled_after_seconds: float
) -> None:
    """Add the rescue job to `app`: every `every_seconds`, tasks running on a
    worker silent for `stalled_after_seconds` are retried, or failed when their
    attempts are used up.

    The job has a queueing lock (one waiting at a time, however long workers are
    down) and no lock, so a rescuer that dies is itself rescued by the next."""

    @app.periodic(cron=f"* * * * * */{every_seconds}", periodic_id="rescue")
    @app.task(
        name=RESCUE_TASK,
        queue=INTERNAL_QUEUE,
        priority=INTERNAL_PRIORITY,
        queueing_lock=RESCUE_TASK,
        pass_context=True,
    )
    async def rescue_stalled_jobs(context: JobContext, timestamp: int) -> dict[str, int]:
        stalled = await app.job_manager.get_stalled_jobs(
            seconds_since_heartbeat=stalled_after_seconds
        )
        retried = failed = 0
        for job in stalled:
            if job.id is None or job.id == context.job.id:
                continue
            lost = WorkerLost(f"worker {job.worker_id} stopped sending heartbeats")
            task = app.tasks.get(job.task_name)
            strategy = task.retry_strategy if task else None
            decision = strategy.get_retry_decision(exception=lost, job=job) if strategy else None
            try:
                if decision is not None:
                    await app.job_manager.retry_job(job, retry_at=decision.retry_at)
                    retried += 1
                else:
                    await app.job_manager.finish_job(job, status=Status.FAILED, delete_job=False)
                    failed += 1
            except exceptions.ConnectorException:
                # It finished, or another rescuer got it, since we looked: its
                # record is its own worker's to write.
                logger.info("job %s moved on before it could be rescued", job.id)
                continue
            # Written once the job has moved, so a run that finished meanwhile
            # keeps its result. The trigger closed the attempt; this gives it
            # (and the task) the error.
            await pg.execute(
                app.connector, "record_task_failure", job_id=job.id, error=describe_error(lost)
            )
        await pg.execute(
            app.connector, "prune_internal_jobs", task_name=RESCUE_TASK, before_id=context.job.id
        )
        if retried or failed:
            logger.warning("rescued stalled jobs: %d retried, %d failed", retried, failed)
        return {"retried": retried, "failed": failed}
