"""GET /tasks reads a page, not the table: on a table grown like a busy service's
(most tasks completed, a few failed, the newest pending), each filter's first
page walks an index backwards and stops at the page's end (EXPLAIN ANALYZE: rows
read by the scan, not time)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from taskservice.models.tasks import PROCRASTINATE_STATUSES, TaskStatus
from taskservice.store.queries import query

TASKS = 30_000
TODO_SHARE = 0.1
PAGE = 51  # the API asks for one more than the page
pytestmark = pytest.mark.anyio  # at collection: parametrized async tests need it then


@pytest.fixture
async def grown(db: asyncpg.Connection) -> asyncpg.Connection:
    """TASKS jobs written in bulk (triggers off: the plans are what is tested),
    with their records; 0.1 % failed, the newest 10 % todo; analyzed."""
    await db.execute("ALTER TABLE procrastinate_jobs DISABLE TRIGGER USER")
    await db.execute(
        """
        INSERT INTO procrastinate_jobs (queue_name, task_name, priority, args, status)
        SELECT 'default', CASE WHEN g % 10 = 0 THEN 'sleep' ELSE 'echo' END, 0,
               jsonb_build_object('value', g),
               CAST(CASE WHEN g > $1 * (1 - $2) THEN 'todo'
                         WHEN g % 1000 = 0 THEN 'failed'
                         ELSE 'succeeded' END AS procrastinate_job_status)
        FROM generate_series(1, $1) AS g
        """,
        TASKS,
        TODO_SHARE,
    )
    await db.execute("ALTER TABLE procrastinate_jobs ENABLE TRIGGER USER")
    await db.execute(
        "INSERT INTO taskservice.task_records (job_id) SELECT id FROM procrastinate_jobs"
    )
    await db.execute("VACUUM ANALYZE procrastinate_jobs")
    await db.execute("VACUUM ANALYZE taskservice.task_records")
    return db


def _listing_args(**filters: Any) -> dict[str, Any]:
    status = filters.pop("status", None)
    return {
        "statuses": list(PROCRASTINATE_STATUSES[TaskStatus(status)]) if status else None,
        "type": None,
        "queue": None,
        "created_after": None,
        "created_before": None,
        "before_id": None,
        "limit": PAGE,
        "page_bytes": 4_194_304,
        "owner": None,
        "batch_id": None,
        **filters,
    }


async def _jobs_scan(conn: asyncpg.Connection, **filters: Any) -> dict[str, Any]:
    """The plan node reading procrastinate_jobs, as the API runs the query (an
    unnamed statement, planned for its arguments)."""
    q = query("list_tasks")
    statement = await conn.prepare("EXPLAIN (ANALYZE, FORMAT JSON) " + q.asyncpg_text, name="")
    [[plan]] = await statement.fetch(*q.asyncpg_args(_listing_args(**filters)))
    nodes = [json.loads(plan)[0]["Plan"] if isinstance(plan, str) else plan[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        if node.get("Relation Name") == "procrastinate_jobs":
            return dict(node)
        nodes.extend(node.get("Plans", []))
    raise AssertionError("no scan of procrastinate_jobs")


def _rows_read(scan: dict[str, Any]) -> int:
    return int(scan["Actual Rows"]) + int(scan.get("Rows Removed by Filter", 0))


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({}, None),
        ({"status": "completed"}, "taskservice_jobs_status_id_idx"),
        ({"status": "failed"}, "taskservice_jobs_status_id_idx"),
        ({"status": "pending"}, "taskservice_jobs_status_id_idx"),
        ({"type": "sleep"}, "taskservice_jobs_task_name_id_idx"),
        ({"queue": "default"}, None),  # every task's: any index in id order will do
        ({"before_id": TASKS // 2}, None),
    ],
)
async def test_a_first_page_reads_a_page(
    grown: asyncpg.Connection, filters: dict[str, Any], index: str | None
) -> None:
    scan = await _jobs_scan(grown, **filters)
    assert scan["Node Type"] == "Index Scan", scan
    assert scan["Scan Direction"] == "Backward", scan
    if index is not None:
        assert scan["Index Name"] == index, scan
    assert _rows_read(scan) <= PAGE, scan


@pytest.mark.parametrize("status", ["in_progress", "cancelled"])
async def test_a_status_of_two_reads_only_its_tasks(grown: asyncpg.Connection, status: str) -> None:
    await grown.execute(
        "UPDATE procrastinate_jobs SET status = 'doing' WHERE id BETWEEN 29001 AND 29010"
    )
    await grown.execute(
        "UPDATE procrastinate_jobs SET status = 'aborted' WHERE id BETWEEN 100 AND 120"
    )
    scan = await _jobs_scan(grown, status=status)
    assert scan["Index Name"] == "taskservice_jobs_status_id_idx", scan
    assert _rows_read(scan) <= 21, scan


async def test_the_status_map_is_the_status_names_table(db: asyncpg.Connection) -> None:
    rows = await db.fetch(
        "SELECT status, array_agg(CAST(procrastinate_status AS text) ORDER BY procrastinate_status)"
        " FROM taskservice.status_names GROUP BY status"
    )
    table = {TaskStatus(status): sorted(names) for status, names in rows}
    assert table == {status: sorted(names) for status, names in PROCRASTINATE_STATUSES.items()}
