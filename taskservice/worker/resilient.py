"""A Procrastinate worker that rides through database outages instead of stopping.

Procrastinate's own worker stops when one of its side tasks (heartbeat, periodic
deferrer, LISTEN) fails, and a failed fetch ends its run loop: a PostgreSQL
restart or a terminated backend ends the process, and the jobs it was running
stay `doing` until a rescue. This worker treats a lost connection as an outage:
running jobs go on, everything that talks to the database waits for it (one
probe, capped jittered backoff), then the worker resumes with the same worker id,
records the outcomes it could not write, puts back in the queue the jobs a claim
took although its answer was lost, and claims again. Past `grace_seconds`
without the database it stops and says why."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from procrastinate import job_context, jobs, retry

from taskservice.store import psycopg_driver as pg
from taskservice.worker.claims import BatchClaimingWorker

logger = logging.getLogger(__name__)

# Reconnection delays: doubling from FIRST to CAP, each drawn in [d/2, d] so that
# workers that lost the database together do not all come back in step.
RECONNECT_FIRST_SECONDS = 0.2
RECONNECT_CAP_SECONDS = 3.0


def is_connection_error(exc: BaseException) -> bool:
    """Whether `exc` (or what it wraps) means the database cannot be reached now:
    refused or dropped connection, admin shutdown or crash recovery, no free slot,
    pool timeout. Not a bad query, a constraint or a missing table."""
    seen: BaseException | None = exc
    while seen is not None:
        if pg.connection_lost(seen):
            return True
        seen = seen.__cause__
    return False


class Backoff:
    """Capped exponential delays with jitter ("equal jitter")."""

    def __init__(
        self,
        first: float = RECONNECT_FIRST_SECONDS,
        cap: float = RECONNECT_CAP_SECONDS,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.first = first
        self.cap = cap
        self._rng = rng
        self._attempt = 0

    def next(self) -> float:
        """The next delay, in seconds: within [d/2, d] where d doubles up to the cap."""
        ceiling = min(self.cap, self.first * 2.0**self._attempt)
        self._attempt = min(self._attempt + 1, 32)
        return ceiling / 2 + self._rng() * ceiling / 2


class DatabaseLink:
    """What a worker knows of its database, readable by others (`taskservice up`'s
    readiness probe): whether it runs, and since when it cannot reach the database."""

    def __init__(self) -> None:
        self.running = False
        self.down_since: float | None = None  # time.monotonic()
        self.last_error: str | None = None
        self.stopped: str | None = None

    def not_ready_reason(self) -> str | None:
        """Why this worker cannot take work now; None when it can."""
        if self.stopped is not None:
            return f"the worker stopped: {self.stopped}"
        if not self.running:
            return "the worker is starting"
        if self.down_since is not None:
            lost_for = time.monotonic() - self.down_since
            return (
                f"the worker is reconnecting to the database (lost {lost_for:.0f} s ago: "
                f"{self.last_error})"
            )
        return None


def _describe(exc: BaseException) -> str:
    """One line (psycopg's messages span several) naming the root error."""
    cause = exc.__cause__ or exc
    return " ".join(f"{type(cause).__name__}: {cause}".split()).rstrip(":")


class ResilientWorker(BatchClaimingWorker):
    """Procrastinate's Worker with batched claims (worker/claims.py), riding
    through database outages (see module doc).

    `probe` opens a fresh connection and runs a trivial query; it decides when the
    database is back. After `grace_seconds` without it, the worker stops and
    `gave_up` says why; `failure` is set when a side task failed otherwise."""

    def __init__(
        self,
        *,
        link: DatabaseLink,
        probe: Callable[[], Awaitable[None]],
        grace_seconds: float,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.link = link
        self.grace_seconds = grace_seconds
        self.gave_up: str | None = None
        self.failure: str | None = None
        self._probe = probe
        self._reconnect: asyncio.Task[bool] | None = None
        self._stop_requested_at: float | None = None
        # A claim met an outage: orphans are released before the next claim.
        self._claim_lost = False

    # -- lifecycle -----------------------------------------------------------

    def stop(self) -> None:
        if self._stop_requested_at is None:
            self._stop_requested_at = time.monotonic()
        super().stop()  # type: ignore[no-untyped-call]  # untyped upstream

    async def run(self) -> None:
        self._stop_requested_at = None
        try:
            await super().run()  # type: ignore[no-untyped-call]  # untyped upstream
        finally:
            self.link.running = False
            if self._reconnect is not None and not self._reconnect.done():
                self._reconnect.cancel()

    async def _run_loop(self) -> None:
        self.link.running = True
        await super()._run_loop()  # type: ignore[no-untyped-call]  # untyped upstream

    async def _shutdown(self, side_tasks: list[asyncio.Task[Any]]) -> None:
        try:
            await super()._shutdown(side_tasks)
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            # The worker row expires with its heartbeat; the rescue then hands
            # any run whose outcome could not be written to another worker.
            logger.warning(
                "could not unregister worker %s: the database is unreachable (%s)",
                self.worker_id,
                _describe(exc),
            )

    # -- the outage ----------------------------------------------------------

    def _give_up_at(self) -> float:
        assert self.link.down_since is not None
        deadline = self.link.down_since + self.grace_seconds
        if self._stop_requested_at is not None:
            # Stopping: waiting for the database only as long as a running job
            # may finish, then what could not be written is left to the rescue.
            grace = self.shutdown_graceful_timeout or 0.0
            deadline = min(deadline, self._stop_requested_at + grace)
        return deadline

    async def wait_for_database(self, exc: BaseException, doing: str) -> bool:
        """Note the outage `exc` (met while `doing`), then wait until the database
        answers again (True) or the worker gives up on it (False). Public so that
        middleware can retry a write the same way: `while True: try: write;
        except: if not (is_connection_error(e) and await worker.wait_for_database(e,
        "...")): raise`."""
        self.link.last_error = _describe(exc)
        if self.link.down_since is None:
            self.link.down_since = time.monotonic()
            logger.warning(
                "database unreachable while %s (%s): running jobs go on; the worker "
                "reconnects and resumes, or exits after %g s without it",
                doing,
                self.link.last_error,
                self.grace_seconds,
            )
        if self._reconnect is None or self._reconnect.done():
            self._reconnect = asyncio.create_task(self._reconnect_loop(), name="reconnect")
        # Shielded: one waiter being cancelled must not stop the others' probe.
        return await asyncio.shield(self._reconnect)

    async def _reconnect_loop(self) -> bool:
        backoff = Backoff()
        while True:
            remaining = self._give_up_at() - time.monotonic()
            if remaining <= 0:
                if self._stop_requested_at is None:
                    self.gave_up = (
                        f"the database was unreachable for more than {self.grace_seconds:g} s "
                        f"(TASKSERVICE_WORKER_DB_GRACE_SECONDS); last error: {self.link.last_error}"
                    )
                    logger.error("worker stops: %s", self.gave_up)
                    self.stop()
                return False
            await asyncio.sleep(min(backoff.next(), remaining))
            try:
                await self._probe()
            except Exception as exc:
                self.link.last_error = _describe(exc)
                continue
            break
        lost_for = time.monotonic() - (self.link.down_since or time.monotonic())
        # Connections the pool holds died with the server: drop them now rather
        # than have each caller find out (psycopg_pool backs off between checks).
        await self._refresh_pool()
        try:
            await self._beat()
        except Exception as exc:
            if not is_connection_error(exc):
                raise
        self.link.down_since = None
        self.link.last_error = None
        logger.warning("database reachable again after %.1f s: worker resumes", lost_for)
        self._new_job_event.set()  # notifications sent meanwhile were lost
        return True

    async def _refresh_pool(self) -> None:
        pool = getattr(self.app.connector, "pool", None)
        check = getattr(pool, "check", None)
        if check is not None:
            try:
                await check()
            except Exception as exc:
                logger.info("pool check after reconnection failed: %s", exc)

    # -- what talks to the database -------------------------------------------

    async def _beat(self) -> None:
        """Heartbeat; when another worker pruned this one's row meanwhile (its
        heartbeat was older than the stall timeout), register again and take back
        the running jobs, so they are neither rescued nor refused when finished."""
        if self.worker_id is None:
            return
        connector = self.app.connector
        row = await pg.fetchrow(
            connector, "worker_heartbeat_if_registered", worker_id=self.worker_id
        )
        if row is not None and row["registered"]:
            return
        pruned = self.worker_id
        # Unregistering the gone row is a no-op in the database, but lets the job
        # manager stop what it runs for that id (the heartbeat thread).
        await self.app.job_manager.unregister_worker(pruned)
        self.worker_id = await self.app.job_manager.register_worker()
        running = [context.job.id for context in self._running_jobs.values()]
        adopted = await pg.fetchrow(
            connector, "adopt_running_jobs", worker_id=self.worker_id, job_ids=running
        )
        logger.warning(
            "worker %s was pruned while it could not send heartbeats; registered again as "
            "%s, taking back %s of its %d running jobs",
            pruned,
            self.worker_id,
            adopted["adopted"] if adopted else 0,
            len(running),
        )

    async def _update_heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.update_heartbeat_interval)
            await self._beat()

    async def _ride_through(self, name: str, side_task: Callable[[], Awaitable[Any]]) -> Any:
        while True:
            try:
                return await side_task()
            except Exception as exc:
                if not is_connection_error(exc):
                    self.failure = f"its {name} task failed: {_describe(exc)}"
                    raise
                if not await self.wait_for_database(exc, name):
                    return None

    async def _listen(self) -> None:
        # (Re)starting to listen: what was notified while not listening is lost.
        self._new_job_event.set()
        await self.app.job_manager.listen_for_jobs(
            on_notification=self._handle_notification, queues=self.queues
        )

    async def _poll_jobs_to_abort(self) -> None:
        while True:
            await asyncio.sleep(self.abort_job_polling_interval)
            if not self._running_jobs:
                continue
            try:
                job_ids = await self.app.job_manager.list_jobs_to_abort_async()
            except Exception as exc:
                if is_connection_error(exc):
                    raise
                logger.exception("poll_jobs_to_abort error")
                continue
            self._handle_abort_jobs_requested(job_ids)

    def _start_side_tasks(self) -> list[asyncio.Task[Any]]:
        side_tasks = {
            "update_heartbeats": self._update_heartbeat,
            "deferrer": self._periodic_deferrer,
            "poll_jobs_to_abort": self._poll_jobs_to_abort,
        }
        if self.listen_notify:
            side_tasks["listener"] = self._listen
        return [
            asyncio.create_task(self._ride_through(name, side_task), name=name)
            for name, side_task in side_tasks.items()
        ]

    async def _fetch_and_process_jobs(self) -> None:
        while True:
            try:
                if self._claim_lost:
                    await self._release_orphans()
                await super()._fetch_and_process_jobs()
                return
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                # The claim that met the outage may have committed all the same.
                self._claim_lost = True
                if not await self.wait_for_database(exc, "fetching jobs"):
                    return

    async def _release_orphans(self) -> None:
        """Put back in the queue the jobs that a claim took for this worker
        although its answer never came (the connection died after the commit):
        `doing` under a worker that heartbeats, they would never run, and
        neither the rescue (silent workers only) nor anyone else would move
        them. Their run never started, so no attempt is charged.

        Called here, between two rounds of claims, and nowhere else: every
        claimer of the last round has ended (started what it got, or given up
        on its statement: _claim_and_start_jobs waits for all of them), and the
        next round starts only after this, in the same task. So no claim is in
        flight, whose jobs would look orphaned too; jobs whose end is being
        written are still in _running_jobs until it commits."""
        assert self.worker_id is not None
        assert self._claiming == 0, "orphans released while a claim is in flight"
        running = [context.job.id for context in self._running_jobs.values()]
        released = await pg.fetch_all(
            self.app.connector,
            "release_orphaned_jobs",
            worker_id=self.worker_id,
            running=running,
        )
        self._claim_lost = False
        if released:
            logger.warning(
                "released %d jobs claimed for worker %s by a claim whose answer was lost "
                "with the connection; they are back in the queue: %s",
                len(released),
                self.worker_id,
                ", ".join(str(row["id"]) for row in released),
            )

    async def _persist_job_status(
        self,
        job: jobs.Job,
        status: jobs.Status,
        retry_decision: retry.RetryDecision | None,
        context: job_context.JobContext,
        job_result: job_context.JobResult | None,
    ) -> None:
        retried = False
        while True:
            try:
                await super()._persist_job_status(
                    job=job,
                    status=status,
                    retry_decision=retry_decision,
                    context=context,
                    job_result=job_result,
                )
                return
            except Exception as exc:
                if retried and not is_connection_error(exc):
                    # The write before the connection dropped may have committed.
                    logger.warning(
                        "job %s: outcome not written after reconnecting (%s); it was "
                        "probably written before the connection was lost",
                        job.id,
                        _describe(exc),
                    )
                    return
                if not is_connection_error(exc):
                    raise
                if not await self.wait_for_database(exc, f"recording the outcome of job {job.id}"):
                    raise
                retried = True
