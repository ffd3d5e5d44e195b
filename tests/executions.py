"""The test_executions table of the `recorded` test task type: repeats and overlaps."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.task_types import EXECUTIONS_TABLE

CREATE = f"""
CREATE TABLE IF NOT EXISTS {EXECUTIONS_TABLE} (
    id          bigserial PRIMARY KEY,
    job_id      bigint NOT NULL,
    pid         integer NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz
)
"""

OVERLAPS = f"""
SELECT a.job_id, a.pid AS first_pid, b.pid AS second_pid
FROM {EXECUTIONS_TABLE} AS a
JOIN {EXECUTIONS_TABLE} AS b ON a.job_id = b.job_id AND a.id < b.id
WHERE b.started_at < coalesce(a.finished_at, 'infinity')
"""


async def create_table(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(CREATE)
    finally:
        await conn.close()


async def executions_per_job(conn: asyncpg.Connection) -> dict[int, int]:
    """How many times each job's task started."""
    rows = await conn.fetch(f"SELECT job_id, count(*) AS n FROM {EXECUTIONS_TABLE} GROUP BY job_id")
    return {row["job_id"]: row["n"] for row in rows}


async def overlaps(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Pairs of executions of one job where the second started before the first ended.

    An execution killed with its worker never records its end: close those first
    with ended_by_kill."""
    return [dict(row) for row in await conn.fetch(OVERLAPS)]


async def ended_by_kill(conn: asyncpg.Connection, pid: int) -> None:
    """Executions of the killed worker `pid` end now (they never wrote their end)."""
    await conn.execute(
        f"UPDATE {EXECUTIONS_TABLE} SET finished_at = clock_timestamp() "
        "WHERE pid = $1 AND finished_at IS NULL",
        pid,
    )
