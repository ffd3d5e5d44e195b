"""A Procrastinate worker that rides through database outages instead of stopping.

Procrastinate's own worker stops when one of its side tasks (heartbeat, periodic
deferrer, LISTEN) fails, and a failed fetch ends its run loop: a PostgreSQL
restart or a terminated backend ends the process, and the jobs it was running
stay `doing` until a rescue. This worker treats a lost connection as an outage:
running jobs go on, everything that talks to the database waits for it (one
probe, capped jittered backoff), then the worker resumes with the same worker id,
records the outcomes it could not write, and claims again. Past
`grace_seconds` without the database it stops and says why."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from procrastinate import job_context, jobs, retry, utils
from procrastinate.worker import Worker

from taskservice.store import psycopg_driver as pg

logger = logging.getLogger(__name__)

# Reconnection delays: doubling from FIRST to CAP, each drawn in [d/2, d] so that
# workers that lost the database together do not all come back in step.
RECONNECT_FIRST_SECONDS = 0.2
RECONNECT_CAP_SECONDS = 3.0
# Claim statements a worker may have in flight at once (see _claim_and_start_jobs).
CLAIMS_IN_FLIGHT = 2


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


class ResilientWorker(Worker):
    """Procrastinate's Worker, riding through database outages (see module doc).

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
        self._slot_freed = asyncio.Event()
        # Jobs whose task function has returned and whose end is being written.
        self._ending: set[int] = set()
        self._job_log_context: dict[int, dict[str, Any]] = {}
        self._claiming = 0  # slots that claims in flight may fill

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
                await self._claim_and_start_jobs()
                return
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                if not await self.wait_for_database(exc, "fetching jobs"):
                    return

    def _free_slots(self) -> int:
        """Jobs this worker may claim now: `concurrency` task functions run at
        once, counting the slots that claims in flight may fill; a run whose
        function has returned no longer takes a slot while its end is being
        written (the next claim overlaps that commit), but the jobs held,
        running or ending, stay under twice `concurrency`."""
        running = len(self._running_jobs) - len(self._ending) + self._claiming
        held = len(self._running_jobs) + self._claiming
        return min(self.concurrency - running, 2 * self.concurrency - held)

    async def _claim_and_start_jobs(self) -> None:
        """Procrastinate's fetch loop, claiming as many jobs as there are free
        slots (see _free_slots) in one round trip (the `claim_jobs` query)
        instead of one at a time, with up to CLAIMS_IN_FLIGHT claims at once
        (while one waits for the database, slots that free up meanwhile are
        claimed by the next). Returns when the queue has no more due jobs for
        now, or on stop; raises what a claim raised, once all have ended."""
        claimers = [
            asyncio.create_task(self._claim_loop(), name="claim") for _ in range(CLAIMS_IN_FLIGHT)
        ]
        # Not cancelled on a sibling's failure: a claim cut short may have taken
        # jobs that nothing would then run.
        await asyncio.wait(claimers)
        # Every claimer's exception read (else asyncio logs it as never retrieved).
        failures = [exc for claimer in claimers if (exc := claimer.exception()) is not None]
        if failures:
            raise failures[0]

    async def _claim_loop(self) -> None:
        while not self._stop_event.is_set():
            while self._free_slots() <= 0:
                self._slot_freed.clear()
                await utils.wait_any(self._slot_freed.wait(), self._stop_event.wait())
                if self._stop_event.is_set():
                    return
            if self._free_slots() < self.concurrency:
                # Runs that end in the same turn of the event loop free their
                # slots together: one claim for all of them, not one each.
                await asyncio.sleep(0)
            free = self._free_slots()
            if free <= 0:
                continue
            # Cleared before the claim: a job notified while it runs wakes the
            # loop again instead of waiting for the next poll.
            self._new_job_event.clear()
            assert self.worker_id is not None
            self._claiming += free
            try:
                rows = await pg.fetchall(
                    self.app.connector,
                    "claim_jobs",
                    queues=list(self.queues) if self.queues is not None else None,
                    worker_id=self.worker_id,
                    limit=free,
                )
            finally:
                self._claiming -= free
                self._slot_freed.set()
            claimed = sorted(
                (jobs.Job.from_row(row) for row in rows),
                key=lambda job: (-job.priority, job.id or 0),
            )
            for job in claimed:
                self._start_job(job)
            if len(claimed) < free:
                return

    def _start_job(self, job: jobs.Job) -> None:
        job_id = job.id
        context = job_context.JobContext(
            app=self.app,
            worker_name=self.worker_name,
            worker_queues=self.queues,
            additional_context=self.additional_context.copy() if self.additional_context else {},
            job=job,
            abort_reason=lambda: self._job_ids_to_abort.get(job_id) if job_id else None,
            start_timestamp=time.time(),
        )
        job_task = asyncio.create_task(
            self._process_job(context),
            name=f"process job {job.task_name}[{job.id}]",
        )
        self._running_jobs[job_task] = context
        job_task.add_done_callback(self._job_done)

    def _job_done(self, task: asyncio.Task[Any]) -> None:
        context = self._running_jobs.pop(task)
        self._ending.discard(context.job.id or 0)
        self._job_log_context.pop(context.job.id or 0, None)
        self._slot_freed.set()

    def _log_extra(
        self,
        action: str,
        context: job_context.JobContext | None,
        job_result: job_context.JobResult | None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        # Procrastinate builds this three to five times per job, debug lines
        # included, each time turning the whole job into a dict: once is enough.
        if context is None or context.job.id is None:
            extra: dict[str, Any] = super()._log_extra(action, context, job_result, **kwargs)
            return extra
        job = self._job_log_context.get(context.job.id)
        if job is None:
            job = self._job_log_context[context.job.id] = context.job.log_context()
        worker = {
            "name": self.worker_name,
            "worker_id": self.worker_id,
            "job_id": context.job.id,
            "queues": list(self.queues or []),
        }
        return {
            "action": action,
            "worker": worker,
            "job": job,
            **(job_result.as_dict() if job_result else {}),  # type: ignore[no-untyped-call]  # untyped upstream
            **kwargs,
        }

    async def _persist_job_status(
        self,
        job: jobs.Job,
        status: jobs.Status,
        retry_decision: retry.RetryDecision | None,
        context: job_context.JobContext,
        job_result: job_context.JobResult | None,
    ) -> None:
        assert job.id is not None
        self._ending.add(job.id)
        self._slot_freed.set()
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
