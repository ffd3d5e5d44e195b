"""Ends a run: its status and its result or error in one transaction, written only
by the run that still holds the job, and retried while the database is away."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import procrastinate
from procrastinate import manager
from procrastinate.jobs import Job, Status

from taskservice.store import psycopg_driver as pg
from taskservice.worker.failures import ResultNotStorable, describe_error
from taskservice.worker.heartbeat import HeartbeatThread

if TYPE_CHECKING:
    from taskservice.worker.completer import BatchCompleter

logger = logging.getLogger(__name__)

_FIRST_BACKOFF = 0.1
_MAX_BACKOFF = 2.0


@dataclass
class Outcome:
    """What a run produced, kept by the middleware until its end is written.

    `result` is JSON text; `uncharged` marks a run stopped by its worker's
    shutdown (not charged to max_attempts); `lost` one whose worker was lost."""

    result: str | None = None
    error: dict[str, Any] | None = None
    uncharged: bool = False
    lost: bool = False
    # The task waits for its batch (worker/waiting.py): the run ends, the task does not.
    waiting: bool = False
    # Called with how long the run waited to start, once its end is written.
    on_written: Callable[[float | None], None] | None = field(default=None, repr=False)


async def end_run(
    connector: procrastinate.PsycopgConnector,
    job: Job,
    *,
    status: Status,
    outcome: Outcome,
    retry_at: dt.datetime | None = None,
) -> bool:
    """Move `job` from this run to `status` and store `outcome`, in one transaction.

    Returns False, writing nothing, when the run no longer holds the job (it
    was rescued, or already ended by an earlier try of this same write)."""
    assert job.id is not None
    if outcome.waiting and status == Status.SUCCEEDED:
        parked = await pg.fetch_all(connector, "park_run", job_id=job.id, attempts=job.attempts)
        return bool(parked)
    async with connector.pool.connection() as conn, conn.transaction():
        moved = await pg.fetch(
            conn,
            "end_run",
            job_id=job.id,
            attempts=job.attempts,
            status=status.value,
            retry_at=retry_at,
            uncharged=int(outcome.uncharged or outcome.lost),
            lost=int(outcome.lost),
        )
        if not moved:
            return False
        rows = await pg.fetch(
            conn,
            "record_run_outcome",
            job_id=job.id,
            run=job.attempts + 1,
            result=outcome.result,
            error=outcome.error,
        )
    if outcome.on_written is not None:
        latency = rows[0]["start_latency"] if rows else None
        outcome.on_written(float(latency) if latency is not None else None)
    return True


async def end_run_for_sure(
    connector: procrastinate.PsycopgConnector,
    job: Job,
    *,
    status: Status,
    outcome: Outcome,
    retry_at: dt.datetime | None = None,
    keep_trying_seconds: float,
) -> bool:
    """end_run, tried again with capped, jittered backoff while the database is
    away, for up to `keep_trying_seconds`; then the run is left `doing` for the
    rescue to find. A result the database refuses (a number or text jsonb cannot
    hold) ends the run as failed with error type `result_not_storable`: the
    task ran, so it is never run again for that."""
    deadline = time.monotonic() + keep_trying_seconds
    backoff = _FIRST_BACKOFF
    while True:
        try:
            return await end_run(connector, job, status=status, outcome=outcome, retry_at=retry_at)
        except pg.DriverError as exc:
            if not pg.connection_lost(exc) and outcome.result is not None:
                logger.error("job %s: its result could not be stored: %s", job.id, exc)
                error = describe_error(ResultNotStorable(str(exc)))
                outcome = Outcome(error=error, on_written=outcome.on_written)
                status, retry_at = Status.FAILED, None
                continue
            if (
                not pg.connection_lost(exc)
                and outcome.error is not None
                and outcome.error.get("type") != "error_not_storable"
            ):
                # The run's end matters more than the details of its error.
                logger.error("job %s: its error could not be stored: %s", job.id, exc)
                error = {"type": "error_not_storable", "message": str(exc), "traceback": None}
                outcome = Outcome(
                    error=error,
                    uncharged=outcome.uncharged,
                    lost=outcome.lost,
                    on_written=outcome.on_written,
                )
                continue
            if not pg.connection_lost(exc) or time.monotonic() > deadline:
                raise
            logger.warning(
                "job %s: could not write the end of its run (%s); trying again in %.1f s",
                job.id,
                exc,
                backoff,
            )
        await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
        backoff = min(backoff * 2, _MAX_BACKOFF)


class ServiceJobManager(manager.JobManager):
    """Procrastinate's JobManager with the service's run endings: the worker's
    finish and retry go through end_run, with the outcome the middleware kept
    (see worker/middleware.py), batched by `completer` when given; heartbeats
    come from a thread of their own, so a task that holds the event loop does
    not make its worker look dead."""

    def __init__(
        self,
        connector: procrastinate.PsycopgConnector,
        *,
        conninfo: str,
        heartbeat_seconds: float,
        finish_retry_seconds: float,
        queues: list[str] | None = None,
        concurrency: int = 1,
        completer: BatchCompleter | None = None,
    ) -> None:
        super().__init__(connector)
        self.completer = completer
        self._details = {"queues": queues, "concurrency": concurrency}
        self.outcomes: dict[int, Outcome] = {}
        self._conninfo = conninfo
        self._heartbeat_seconds = heartbeat_seconds
        self._finish_retry_seconds = finish_retry_seconds
        self._heartbeats: dict[int, HeartbeatThread] = {}

    @property
    def _psycopg(self) -> procrastinate.PsycopgConnector:
        assert isinstance(self.connector, procrastinate.PsycopgConnector)
        return self.connector

    async def _end(self, job: Job, status: Status, retry_at: dt.datetime | None = None) -> None:
        assert job.id is not None
        outcome = self.outcomes.pop(job.id, None) or Outcome()
        # A batch.map parking to wait for its batch is rare: written on its own.
        if self.completer is not None and not outcome.waiting:
            ended = await self.completer.end_run(
                job, status=status, outcome=outcome, retry_at=retry_at
            )
        else:
            ended = await end_run_for_sure(
                self._psycopg,
                job,
                status=status,
                outcome=outcome,
                retry_at=retry_at,
                keep_trying_seconds=self._finish_retry_seconds,
            )
        if not ended and not outcome.waiting:  # a waiting one may be woken before it parks
            logger.warning(
                "job %s: run %d ended after it was rescued; its outcome is dropped",
                job.id,
                job.attempts + 1,
            )

    async def finish_job(self, job: Job, status: Status, delete_job: bool) -> None:
        if delete_job:  # the service keeps finished jobs; honoured all the same
            await super().finish_job(job, status, delete_job)
            return
        await self._end(job, status)

    async def retry_job(
        self,
        job: Job,
        retry_at: dt.datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        lock: str | None = None,
    ) -> None:
        # ServiceRetryStrategy never moves a job to another priority, queue or lock.
        await self._end(job, Status.TODO, retry_at or dt.datetime.now(dt.UTC))

    async def register_worker(self) -> int:
        worker_id = await super().register_worker()
        # What Procrastinate does not keep: shown by GET /workers and the dashboard.
        await pg.execute(
            self.connector,
            "record_worker_details",
            worker_id=worker_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            **self._details,
        )
        thread = HeartbeatThread(self._conninfo, worker_id, self._heartbeat_seconds)
        thread.start()
        self._heartbeats[worker_id] = thread
        return worker_id

    async def update_heartbeat(self, worker_id: int) -> None:
        # The thread beats; this (Procrastinate's side task) only checks it lives.
        thread = self._heartbeats.get(worker_id)
        if thread is None or not thread.is_alive():
            await super().update_heartbeat(worker_id)

    async def stop_heartbeats(self) -> None:
        """Stop the heartbeat threads of workers registered and never
        unregistered (a worker that did not stop cleanly, or a test)."""
        for worker_id in list(self._heartbeats):
            thread = self._heartbeats.pop(worker_id)
            await asyncio.to_thread(thread.stop)

    async def unregister_worker(self, worker_id: int) -> None:
        thread = self._heartbeats.pop(worker_id, None)
        if thread is not None:
            await asyncio.to_thread(thread.stop)
        await super().unregister_worker(worker_id)
