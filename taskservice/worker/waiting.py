"""A run that ends without ending its task: it waits, `doing` on no worker, to be woken."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WaitForBatch:
    """What a task function returns to end its run but not its task: the task
    stays `doing`, held by no worker (its slot is free for the batch's own
    tasks, so even a worker of concurrency 1 gets through), until the last task
    of batch `batch_id` ends. Then the database (taskservice.wake_batch_parent)
    puts it back in the queue, and its next run sums the batch up; or ends it
    `aborted` if it was cancelled meanwhile. The rescue leaves it alone."""

    batch_id: int
