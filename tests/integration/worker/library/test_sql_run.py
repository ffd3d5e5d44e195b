"""sql.run on the service's database: configured statements by name only,
with the workers' session limits."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from taskservice.registry import TaskRegistry
from taskservice.settings import Settings
from tests.conftest import running_worker
from tests.helpers import submit, wait_for_status
from tests.integration.worker.library.conftest import api, refusal

PURGE = "DELETE FROM sessions WHERE expires_at < now()"


@pytest.fixture
async def sessions(db: asyncpg.Connection) -> asyncpg.Connection:
    await db.execute("CREATE TABLE sessions (id int PRIMARY KEY, expires_at timestamptz NOT NULL)")
    await db.execute(
        "INSERT INTO sessions SELECT i, now() + (i * 2 - 5) * interval '30 minutes' "
        "FROM generate_series(1, 5) AS i"
    )
    return db


@pytest.fixture
def sql_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "sql_statements": {
                "purge_sessions": PURGE,
                "broken": "DELETE FROM no_such_table",
                "slow": "SELECT pg_sleep(5)",
            },
            "statement_timeout_seconds": 0.5,
        }
    )


async def test_a_configured_statement_runs_by_name(
    sessions: asyncpg.Connection, sql_settings: Settings, registry: TaskRegistry
) -> None:
    async with api(sql_settings, registry) as client:
        task = await submit(client, type="sql.run", params={"statement": "PURGE_SESSIONS"})
        async with running_worker(sql_settings, registry):
            done = await wait_for_status(client, task["id"], "completed", "failed")
    assert done["status"] == "completed", done["error"]
    assert done["result"]["rows_affected"] == 2
    assert done["result"]["duration_ms"] >= 0
    assert await sessions.fetchval("SELECT array_agg(id ORDER BY id) FROM sessions") == [3, 4, 5]


async def test_a_refused_statement_fails_at_once_and_a_slow_one_meets_the_timeout(
    sessions: asyncpg.Connection, sql_settings: Settings, registry: TaskRegistry
) -> None:
    async with api(sql_settings, registry) as client:
        broken = await submit(client, type="sql.run", params={"statement": "broken"})
        slow = await submit(client, type="sql.run", params={"statement": "slow"}, max_attempts=1)
        async with running_worker(sql_settings, registry):
            broken = await wait_for_status(client, broken["id"], "completed", "failed")
            started = time.monotonic()
            slow = await wait_for_status(client, slow["id"], "completed", "failed")
    assert (broken["status"], broken["attempts"]) == ("failed", 1)
    assert broken["error"]["details"] == {"sqlstate": "42P01"}
    assert "no_such_table" in broken["error"]["message"]
    assert slow["status"] == "failed"
    assert slow["error"]["type"] == "DatabaseError"
    assert "statement timeout" in slow["error"]["message"]
    assert time.monotonic() - started < 4


async def test_unknown_names_are_refused_at_submission(
    sql_settings: Settings, registry: TaskRegistry
) -> None:
    async with api(sql_settings, registry) as client:
        error = refusal(
            await client.post(
                "/tasks", json={"type": "sql.run", "params": {"statement": "drop_all"}}
            )
        )
        assert error["loc"] == ["body", "params", "statement"]
        assert "TASKSERVICE_SQL_DROP_ALL" in error["msg"]
        # A name, never SQL.
        error = refusal(
            await client.post(
                "/tasks", json={"type": "sql.run", "params": {"statement": "DELETE FROM sessions"}}
            )
        )
        assert error["loc"] == ["body", "params", "statement"]
        schedule = {
            "name": "purge",
            "type": "sql.run",
            "params": {"statement": "drop_all"},
            "cron": "*/5 * * * *",
        }
        assert refusal(await client.post("/scheduler/jobs", json=schedule))["loc"] == [
            "body",
            "params",
            "statement",
        ]


async def test_a_schedule_purges_periodically(
    sessions: asyncpg.Connection, sql_settings: Settings, registry: TaskRegistry
) -> None:
    """The periodic clean-up of README: a schedule running sql.run."""
    schedule = {
        "name": "purge-sessions",
        "type": "sql.run",
        "params": {"statement": "purge_sessions"},
        "interval_seconds": 1,
    }
    async with api(sql_settings, registry) as client:
        response = await client.post("/scheduler/jobs", json=schedule)
        assert response.status_code == 201, response.text
        async with running_worker(sql_settings, registry):
            deadline = time.monotonic() + 15
            while await sessions.fetchval("SELECT count(*) FROM sessions") != 3:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
