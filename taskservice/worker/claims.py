"""Procrastinate's Worker claiming several jobs per statement: as many as it has
free slots, two claims in flight, a slot freed when the task function returns,
the next jobs claimed while the current ones run when tasks are short; a job's
start logged at DEBUG, its success only when asked (log_successes)."""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import time
from typing import Any

from procrastinate import exceptions, job_context, jobs, middleware, retry, tasks, utils
from procrastinate.worker import Worker

from taskservice.registry import RESERVED_PREFIX
from taskservice.store import psycopg_driver as pg

# Claim statements a worker may have in flight at once (see _claim_and_start_jobs).
CLAIMS_IN_FLIGHT = 2
# A worker claims up to `concurrency` jobs ahead of its free slots while its
# task functions take less than this, on average and each running one so far
# (see _free_slots).
CLAIM_AHEAD_BELOW_SECONDS = 0.01
# Weight of the newest run in that average (an exponential moving average).
_NEWEST_RUN_WEIGHT = 0.1


class RunSlots:
    """At most `size` holders at once, first come first served: asyncio's
    Semaphore, without the scan of every waiter that its acquire() makes
    (Python 3.11), which jobs claimed ahead made a tenth of a busy worker's time."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot as it was cancelled: pass it on
            elif waiter in self._waiters:  # (release() may have dropped it already)
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Hand the slot to the first waiter still waiting, else free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()


class BatchClaimingWorker(Worker):
    """Procrastinate's Worker, with its fetch loop replaced (one job per fetch,
    four round trips each): see _claim_and_start_jobs. Priorities, locks, queue
    filters, aborts, heartbeats and graceful shutdown are Procrastinate's."""

    def __init__(self, *, log_successes: bool = False, **options: Any) -> None:
        super().__init__(**options)
        self._log_successes = log_successes
        self._slot_freed = asyncio.Event()
        # Jobs whose task function has returned and whose end is being written.
        self._ending: set[int] = set()
        self._job_log_context: dict[int, dict[str, Any]] = {}
        self._claiming = 0  # slots that claims in flight may fill
        self._task_is_async: dict[str, bool] = {}
        # Task functions running at once, at most: jobs claimed ahead wait here.
        self._run_slots = RunSlots(self.concurrency)
        self._mean_run_seconds: float | None = None
        self._run_started: dict[int, float] = {}  # job id -> time.perf_counter()

    async def _fetch_and_process_jobs(self) -> None:
        await self._claim_and_start_jobs()

    def _free_slots(self) -> int:
        """Jobs this worker may claim now: `concurrency` task functions run at
        once, counting the slots that claims in flight may fill; a run whose
        function has returned no longer takes a slot while its end is being
        written (the next claim overlaps that commit), but the jobs held,
        running or ending, stay under twice `concurrency`.

        While its tasks are short (under CLAIM_AHEAD_BELOW_SECONDS on average,
        the service's own jobs left out, and every running one so far), the
        worker also claims up to `concurrency` jobs ahead, which wait for a slot
        (_run_task): the next claim's round trip then overlaps the runs of the
        current jobs instead of leaving the worker idle between them, as
        Celery's prefetch and Graphile Worker's local queue do. A job claimed
        ahead waits about one short run; while a long one runs nothing is
        claimed ahead, so jobs do not wait behind it on a worker that cannot
        start them while another could. Only one claim runs ahead at a time:
        claims that overlap take their jobs in an order of their own (which
        statement locks a row first), so two in flight ahead of the slots could
        start a later job before an earlier one even at concurrency 1."""
        ahead = self.concurrency if self._claiming == 0 and self._tasks_are_short() else 0
        running = len(self._running_jobs) - len(self._ending) + self._claiming
        held = len(self._running_jobs) + self._claiming
        return min(self.concurrency + ahead - running, 2 * self.concurrency + ahead - held)

    def _tasks_are_short(self) -> bool:
        mean = self._mean_run_seconds
        if mean is None or mean >= CLAIM_AHEAD_BELOW_SECONDS:
            return False
        oldest = min(self._run_started.values(), default=None)
        return oldest is None or time.perf_counter() - oldest < CLAIM_AHEAD_BELOW_SECONDS

    def _note_run(self, seconds: float) -> None:
        mean = self._mean_run_seconds
        self._mean_run_seconds = (
            seconds if mean is None else mean + _NEWEST_RUN_WEIGHT * (seconds - mean)
        )

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
                rows = await pg.fetch_all_cancellable(
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

    async def _process_job(self, context: job_context.JobContext) -> None:
        """Procrastinate's _process_job (same middleware order, retry decision,
        statuses and outcome line), without its per-job costs: the "Starting
        job" line is DEBUG here and a success's line is written only with
        log_successes (_log_job_outcome; two INFO lines per job were a seventh
        of a busy worker's time), and a task's sync-or-async nature is read
        once per task, not per job."""
        job = context.job
        task = self.app.tasks.get(job.task_name)
        job_result = job_context.JobResult(start_timestamp=context.start_timestamp)
        exc_info: bool | BaseException = False
        job_retry: exceptions.JobRetry | None = None
        retry_decision: retry.RetryDecision | None = None
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug(
                f"Starting job {job.call_string}",
                extra=self._log_extra(context=context, action="start_job", job_result=job_result),
            )
        try:
            if task is None:
                raise exceptions.TaskNotFound
            job_result.result = await middleware.compose(
                self.worker_middleware, lambda: self._run_task(task, context), context, self
            )()
        except BaseException as exc:
            exc_info = exc
            # An aborted job is retried only when the abort was a shutdown.
            if not isinstance(exc, exceptions.JobAborted) or (
                context.abort_reason() == job_context.AbortReason.SHUTDOWN
            ):
                job_retry = task.get_retry_exception(exception=exc, job=job) if task else None
                retry_decision = job_retry.retry_decision if job_retry else None
                if isinstance(exc, exceptions.TaskNotFound):
                    self.logger.exception(
                        "Task was not found",
                        extra=self._log_extra(
                            context=context,
                            action="task_not_found",
                            exception=str(exc),
                            job_result=job_result,
                        ),
                    )
        finally:
            job_result.end_timestamp = time.time()
            if isinstance(exc_info, exceptions.JobAborted | asyncio.CancelledError):
                status = jobs.Status.ABORTED
            elif exc_info:
                status = jobs.Status.FAILED
            else:
                status = jobs.Status.SUCCEEDED
            self._log_job_outcome(
                status=status,
                context=context,
                job_result=job_result,
                job_retry=job_retry,
                exc_info=exc_info,
            )
            persist = asyncio.create_task(
                self._persist_job_status(
                    job=job,
                    status=status,
                    retry_decision=retry_decision,
                    context=context,
                    job_result=job_result,
                )
            )
            try:
                await asyncio.shield(persist)
            except asyncio.CancelledError:
                await persist
                raise

    def _log_job_outcome(
        self,
        status: jobs.Status,
        context: job_context.JobContext,
        job_result: job_context.JobResult | None,
        job_retry: exceptions.JobRetry | None,
        exc_info: bool | BaseException = False,
    ) -> None:
        # A success is in the database, the metrics and the event stream; a
        # line each (thousands a second on a busy worker) only when asked for.
        if status == jobs.Status.SUCCEEDED and not self._log_successes:
            return
        super()._log_job_outcome(status, context, job_result, job_retry, exc_info)

    async def _run_task(
        self, task: tasks.Task[Any, Any, Any], context: job_context.JobContext
    ) -> Any:
        """The task function inside its task middlewares (a sync one in a thread),
        once one of the `concurrency` run slots is free (see _free_slots)."""
        async with self._run_slots:
            if context.abort_reason() is not None:
                # Aborted while it waited for a slot (an async job is cancelled
                # instead): as a sync task that checks should_abort() would end.
                raise exceptions.JobAborted
            job_id = context.job.id or 0
            started = self._run_started[job_id] = time.perf_counter()
            try:
                return await self._call_task(task, context)
            finally:
                del self._run_started[job_id]
                if not task.name.startswith(RESERVED_PREFIX):  # the service's own jobs
                    self._note_run(time.perf_counter() - started)

    async def _call_task(
        self, task: tasks.Task[Any, Any, Any], context: job_context.JobContext
    ) -> Any:
        args = [context] if task.pass_context else []
        kwargs = context.job.task_kwargs
        is_async = self._task_is_async.get(task.name)
        if is_async is None:
            is_async = self._task_is_async[task.name] = inspect.iscoroutinefunction(task.func)
        middlewares = self._resolve_task_middlewares(task, is_async)
        if is_async:

            async def run_async_task() -> Any:
                return await task(*args, **kwargs)

            result = await middleware.compose(middlewares, run_async_task, context, self)()
        else:

            def run_sync_task() -> Any:
                return task(*args, **kwargs)

            result = await utils.sync_to_async(
                middleware.compose(middlewares, run_sync_task, context, self)
            )
        # A sync function may return an awaitable (Procrastinate awaits it too).
        if inspect.isawaitable(result):
            result = await result
        return result

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
        # Procrastinate builds this two to five times per job, each time turning
        # the whole job into a dict: once per job, and only what is logged.
        if context is None or context.job.id is None:
            extra: dict[str, Any] = super()._log_extra(action, context, job_result, **kwargs)
            return extra
        job = self._job_log_context.get(context.job.id)
        if job is None:
            # What the log formatters read (logs.py), not Procrastinate's whole
            # job with its arguments and call string (attrs.asdict, per job).
            job = self._job_log_context[context.job.id] = {
                "id": context.job.id,
                "task_name": context.job.task_name,
                "queue": context.job.queue,
                "attempts": context.job.attempts,
                "priority": context.job.priority,
                "lock": context.job.lock,
            }
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
        # The task function has returned: its slot is free for the next claim
        # while its end is written (the job stays in _running_jobs until then,
        # so a graceful shutdown still waits for the write).
        assert job.id is not None
        self._ending.add(job.id)
        self._slot_freed.set()
        await super()._persist_job_status(
            job=job,
            status=status,
            retry_decision=retry_decision,
            context=context,
            job_result=job_result,
        )
