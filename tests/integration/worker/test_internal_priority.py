"""The service's own jobs (dispatcher, rescue) run ahead of a backlog of user tasks."""

from __future__ import annotations

import signal
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx

from taskservice.registry import TaskRegistry
from taskservice.settings import Settings
from tests.conftest import running_worker
from tests.helpers import submit, wait_for_status
from tests.processes import FAST_RESCUE, worker_process

BACKLOG = 2_000
# Each backlog task takes a little time, so that the worker (which drains over
# 1,000 no-op tasks/s) is still on the backlog when the measurement ends.
BACKLOG_TASK_SECONDS = 0.02

DEFER_BACKLOG = """
SELECT procrastinate_defer_jobs_v1(array(
    SELECT ROW('default', 'sleep', 0, NULL, NULL,
               jsonb_build_object('seconds', $2::float8, '_options', '{"max_attempts": 3}'::jsonb),
               NULL
           )::procrastinate_job_to_defer_v1
    FROM generate_series(1, $1)
))
"""


async def test_schedules_and_rescue_keep_time_behind_a_backlog(
    client: httpx.AsyncClient,
    settings: Settings,
    registry: TaskRegistry,
    database_url: str,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    """A per-second schedule keeps firing on time and a killed worker's task is
    rescued within stalled-after + rescue interval + poll, while 2,000 older
    user tasks wait."""
    with worker_process(database_url, tmp_path, **FAST_RESCUE) as doomed:
        task = await submit(client, type="sleep", params={"seconds": 3})
        await wait_for_status(client, task["id"], "in_progress", within=15)
        await db.execute(DEFER_BACKLOG, BACKLOG, BACKLOG_TASK_SECONDS)
        created = await client.post(
            "/scheduler/jobs",
            json={
                "name": "tick",
                "type": "nap",
                "params": {"seconds": 0},
                "cron": "* * * * * *",
            },
        )
        schedule_id = created.json()["id"]
        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait(timeout=10)
    killed_at = datetime.now().astimezone()

    async with running_worker(settings.model_copy(update=FAST_RESCUE), registry):
        since = await db.fetchval("SELECT now() + interval '1 second'")
        rescued = await wait_for_status(client, task["id"], "completed", within=20)
        waiting = await db.fetchval(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'sleep' AND status = 'todo'"
        )
        lags = await db.fetch(
            "SELECT EXTRACT(EPOCH FROM deferred_at - due_at)::float8 AS lag "
            "FROM taskservice.schedule_runs WHERE schedule_id = $1 AND due_at >= $2 "
            "ORDER BY due_at",
            schedule_id,
            since,
        )

    # The backlog was still there for the whole measurement: the test measured something.
    assert waiting > 0, "the backlog drained before the schedule was measured"
    history = (await client.get(f"/tasks/{task['id']}")).json()["attempt_history"]
    rescued_after = (datetime.fromisoformat(history[-1]["started_at"]) - killed_at).total_seconds()
    # Stalled after 2 s, rescue every 1 s, polling every 0.2 s.
    assert rescued_after < 5, (rescued_after, rescued)
    assert len(lags) >= 3, lags
    assert max(row["lag"] for row in lags) < 1.5, [row["lag"] for row in lags]
