"""Progress reporting for task functions: `report_progress(context, fraction, message)`.

Rate-limited per run (at most one write every MIN_INTERVAL_SECONDS; the newest
value wins, and the last one is written when the run ends), so a chatty task
cannot flood the database. Each write also notifies the API's streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading

from asgiref.sync import async_to_sync
from procrastinate import BaseConnector, JobContext

from taskservice.store import psycopg_driver as pg

logger = logging.getLogger(__name__)

MIN_INTERVAL_SECONDS = 0.5
MAX_MESSAGE_LENGTH = 500
_CONTEXT_KEY = "taskservice.progress"

Progress = tuple[float | None, str | None]


class ProgressReporter:
    """One run's progress: writes throttled, the latest value kept, flushed at close.

    Lives on the worker's event loop; `report` may be called from a sync task's
    thread too."""

    def __init__(
        self, connector: BaseConnector, job_id: int, min_interval: float = MIN_INTERVAL_SECONDS
    ) -> None:
        self._connector = connector
        self._job_id = job_id
        self._min_interval = min_interval
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._latest: Progress | None = None
        self._last_write = -math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._writing: asyncio.Task[None] | None = None

    def report(self, fraction: float | None, message: str | None) -> None:
        if threading.get_ident() == self._thread:
            self._offer((fraction, message))
        else:  # a sync task's thread: hand over to the loop, which never blocks on it
            self._loop.call_soon_threadsafe(self._offer, (fraction, message))

    def _offer(self, value: Progress) -> None:
        self._latest = value
        if self._writing is not None or self._timer is not None:
            return  # written when the current write or wait ends
        wait = self._last_write + self._min_interval - self._loop.time()
        if wait > 0:
            self._timer = self._loop.call_later(wait, self._write_latest)
        else:
            self._write_latest()

    def _write_latest(self) -> None:
        self._timer = None
        if self._latest is None:
            return
        value, self._latest = self._latest, None
        self._last_write = self._loop.time()
        self._writing = self._loop.create_task(self._write(value))
        self._writing.add_done_callback(self._written)

    def _written(self, _task: asyncio.Task[None]) -> None:
        self._writing = None
        if self._latest is not None:
            self._offer(self._latest)

    async def _write(self, value: Progress) -> None:
        fraction, message = value
        try:
            await pg.execute(
                self._connector,
                "record_progress",
                job_id=self._job_id,
                fraction=fraction,
                message=message,
            )
        except Exception:  # progress must never fail the task
            logger.warning("could not record progress of task %s", self._job_id, exc_info=True)

    async def close(self) -> None:
        """Write the last value reported, if it is not written yet."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._writing is not None:
            with contextlib.suppress(Exception):
                await self._writing
        if self._latest is not None:
            value, self._latest = self._latest, None
            await self._write(value)


def with_progress(context: JobContext, reporter: ProgressReporter) -> JobContext:
    """The context a task function gets: it carries this run's reporter."""
    return context.evolve(additional_context={**context.additional_context, _CONTEXT_KEY: reporter})


def report_progress(
    context: JobContext, fraction: float | None = None, message: str | None = None
) -> None:
    """Tell clients how far the task is: `fraction` between 0 and 1 and/or a
    short `message` (cut at 500 characters). Cheap to call often: writes are
    rate-limited. Works in async and sync task functions."""
    if fraction is not None and not (math.isfinite(fraction) and 0 <= fraction <= 1):
        raise ValueError(f"progress fraction must be between 0 and 1, not {fraction!r}")
    reporter = context.additional_context.get(_CONTEXT_KEY)
    if not isinstance(reporter, ProgressReporter):
        return  # not run by the service's worker (a test calling the function)
    if message is not None:
        message = message.replace("\x00", "")[:MAX_MESSAGE_LENGTH]
    reporter.report(fraction, message)


async def _open(connector: BaseConnector, job_id: int) -> ProgressReporter:
    return ProgressReporter(connector, job_id)


def open_from_thread(connector: BaseConnector, job_id: int) -> ProgressReporter:
    """A reporter for a sync task, made from its thread on the worker's loop."""
    return async_to_sync(_open)(connector, job_id)


def close_from_thread(reporter: ProgressReporter) -> None:
    """Flush a sync task's progress from its thread (the loop does the write)."""
    async_to_sync(reporter.close)()
