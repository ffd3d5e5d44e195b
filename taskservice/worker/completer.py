"""Ends runs in batches: the ends that arrive while one batch is being written go
together in the next, one statement and one commit for the lot; each run's end
is acknowledged only once its batch has committed."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field

import procrastinate
from procrastinate.jobs import Job, Status

from taskservice.store import psycopg_driver as pg
from taskservice.worker.runs import Outcome, end_run_for_sure

logger = logging.getLogger(__name__)

# Runs per statement: enough that a busy worker commits rarely, few enough that
# one statement stays short (its rows stay locked until it commits).
MAX_BATCH = 200


@dataclass
class _End:
    job: Job
    status: Status
    outcome: Outcome
    retry_at: dt.datetime | None
    done: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def as_row(self) -> dict[str, object]:
        uncharged = self.outcome.uncharged or self.outcome.lost
        return {
            "job_id": self.job.id,
            "attempts": self.job.attempts,
            "status": self.status.value,
            "retry_at": self.retry_at.isoformat() if self.retry_at else None,
            "uncharged": int(uncharged),
            "lost": int(self.outcome.lost),
            "result": self.outcome.result,
            "error": self.outcome.error,
        }


class BatchCompleter:
    """Writes the ends of runs (what runs.end_run does for one) in batches.

    No task of its own: the first end to arrive while nothing is being written
    starts a writer, which writes batches until none is left. A batch the
    database refuses (a result or error it cannot store) or that meets an
    outage is written again one run at a time by end_run_for_sure, which knows
    what to do with each (fail the run with `result_not_storable`, retry while
    the database is away for up to `keep_trying_seconds`)."""

    def __init__(
        self,
        connector: procrastinate.PsycopgConnector,
        *,
        keep_trying_seconds: float,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._connector = connector
        self._keep_trying_seconds = keep_trying_seconds
        self._max_batch = max_batch
        self._waiting: list[_End] = []
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0  # written, for tests and logs

    async def end_run(
        self,
        job: Job,
        *,
        status: Status,
        outcome: Outcome,
        retry_at: dt.datetime | None = None,
    ) -> bool:
        """end_run_for_sure, batched: True once the end is committed, False when
        the run no longer held the job (nothing written)."""
        end = _End(job, status, outcome, retry_at)
        self._waiting.append(end)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all(), name="completer")
        # Shielded: the caller being cancelled must not cancel others' write.
        return await asyncio.shield(end.done)

    async def _write_all(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            try:
                await self._write(batch)
            except BaseException as exc:  # never leave a caller waiting
                for end in batch:
                    if not end.done.done():
                        end.done.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise

    async def _write(self, batch: list[_End]) -> None:
        try:
            rows = await pg.fetch_all_cancellable(
                self._connector, "end_runs", runs=[end.as_row() for end in batch]
            )
        except Exception as exc:
            logger.info(
                "%d run ends could not be written together (%s); writing them one by one",
                len(batch),
                " ".join(str(exc).split())[:200],
            )
            await asyncio.gather(*(self._write_one(end) for end in batch))
            return
        self.batches += 1
        latencies = {row["id"]: row["start_latency"] for row in rows}
        for end in batch:
            ended = end.job.id in latencies
            if ended and end.outcome.on_written is not None:
                latency = latencies[end.job.id]
                end.outcome.on_written(float(latency) if latency is not None else None)
            end.done.set_result(ended)

    async def _write_one(self, end: _End) -> None:
        try:
            ended = await end_run_for_sure(
                self._connector,
                end.job,
                status=end.status,
                outcome=end.outcome,
                retry_at=end.retry_at,
                keep_trying_seconds=self._keep_trying_seconds,
            )
        except Exception as exc:
            end.done.set_exception(exc)
        else:
            end.done.set_result(ended)
