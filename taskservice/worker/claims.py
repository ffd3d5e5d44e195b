"""Procrastinate's Worker claiming several jobs per statement: as many as it has
free slots, two claims in flight, a slot freed when the task function returns."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from procrastinate import job_context, jobs, retry, utils
from procrastinate.worker import Worker

from taskservice.store import psycopg_driver as pg

# Claim statements a worker may have in flight at once (see _claim_and_start_jobs).
CLAIMS_IN_FLIGHT = 2


class BatchClaimingWorker(Worker):
    """Procrastinate's Worker, with its fetch loop replaced (one job per fetch,
    four round trips each): see _claim_and_start_jobs. Priorities, locks, queue
    filters, aborts, heartbeats and graceful shutdown are Procrastinate's."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._slot_freed = asyncio.Event()
        # Jobs whose task function has returned and whose end is being written.
        self._ending: set[int] = set()
        self._job_log_context: dict[int, dict[str, Any]] = {}
        self._claiming = 0  # slots that claims in flight may fill

    async def _fetch_and_process_jobs(self) -> None:
        await self._claim_and_start_jobs()

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
