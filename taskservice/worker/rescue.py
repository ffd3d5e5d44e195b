"""The periodic job that rescues tasks whose worker died (SIGKILL, lost machine)."""

from __future__ import annotations

import datetime as dt
import logging

import procrastinate
from procrastinate import JobContext
from procrastinate.jobs import Status

from taskservice.job_options import lost_runs
from taskservice.registry import INTERNAL_PRIORITY, INTERNAL_QUEUE
from taskservice.store import psycopg_driver as pg
from taskservice.worker.failures import WorkerLost, describe_error
from taskservice.worker.runs import Outcome, end_run

logger = logging.getLogger(__name__)

RESCUE_TASK = "taskservice.rescue_stalled_jobs"


def register_rescue(
    app: procrastinate.App,
    *,
    every_seconds: int,
    stalled_after_seconds: float,
    max_worker_losses: int,
) -> None:
    """Add the rescue job to `app`: every `every_seconds`, tasks running on a
    worker silent for `stalled_after_seconds` are put back in the queue at once,
    without using one of their attempts (a lost worker is never the task's
    fault), or failed with `worker_lost` once they have lost their worker
    `max_worker_losses` times (a task that kills its worker every time).

    A batch.map task waiting for its batch is not stalled (worker/waiting.py).

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
        connector = app.connector
        assert isinstance(connector, procrastinate.PsycopgConnector)
        stalled = await app.job_manager.get_stalled_jobs(
            seconds_since_heartbeat=stalled_after_seconds
        )
        # A batch.map waiting for its batch is `doing` on no worker by design:
        # the batch's last task wakes it (worker/waiting.py).
        waiting = (
            {
                row["id"]
                for row in await pg.fetch_all(
                    connector, "waiting_batch_parents", job_ids=[job.id for job in stalled]
                )
            }
            if stalled
            else set()
        )
        retried = failed = 0
        for job in stalled:
            if job.id is None or job.id == context.job.id or job.id in waiting:
                continue
            lost = WorkerLost(f"worker {job.worker_id} stopped sending heartbeats")
            last_chance = lost_runs(job) + 1 >= max_worker_losses
            outcome = Outcome(error=describe_error(lost), lost=not last_chance)
            # Guarded by the run's attempts: a run that finished, or that another
            # rescuer got, since we looked is left alone.
            if last_chance:
                moved = await end_run(connector, job, status=Status.FAILED, outcome=outcome)
            else:
                moved = await end_run(
                    connector,
                    job,
                    status=Status.TODO,
                    outcome=outcome,
                    retry_at=dt.datetime.now(dt.UTC),
                )
            if not moved:
                logger.info("job %s moved on before it could be rescued", job.id)
            elif last_chance:
                failed += 1
            else:
                retried += 1
        await pg.execute(
            app.connector, "prune_internal_jobs", task_name=RESCUE_TASK, before_id=context.job.id
        )
        if retried or failed:
            logger.warning("rescued stalled jobs: %d retried, %d failed", retried, failed)
        return {"retried": retried, "failed": failed}
