"""`taskservice migrate`: from empty, idempotent, safe to run concurrently."""

from __future__ import annotations

import asyncio
import os

import asyncpg

from taskservice.store.migrate import migrate, migration_names
from tests.conftest import janitor
from tests.pg import Server


async def _recorded(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT name FROM taskservice.schema_migrations ORDER BY name")
    finally:
        await conn.close()
    return [row["name"] for row in rows]


async def test_migrate_from_empty_then_again_does_nothing(empty_database_url: str) -> None:
    assert await migrate(empty_database_url) == migration_names()
    assert await migrate(empty_database_url) == []
    assert await _recorded(empty_database_url) == sorted(migration_names())


async def test_concurrent_migrations_apply_each_step_once(empty_database_url: str) -> None:
    results = await asyncio.gather(*(migrate(empty_database_url) for _ in range(4)))
    assert sorted(results, key=len) == [[], [], [], migration_names()]
    assert await _recorded(empty_database_url) == sorted(migration_names())


async def test_existing_procrastinate_install_is_adopted(empty_database_url: str) -> None:
    """Jobs deferred before taskservice was installed get records and show up as tasks."""
    from procrastinate.schema import SchemaManager

    conn = await asyncpg.connect(empty_database_url)
    try:
        await conn.execute(SchemaManager.get_schema())
        await conn.execute(
            "SELECT procrastinate_defer_jobs_v1("
            "ARRAY[ROW('default', 'echo', 0, NULL, NULL, '{\"value\": 1}'::jsonb, NULL)"
            "::procrastinate_job_to_defer_v1])"
        )
        await migrate(empty_database_url)
        row = await conn.fetchrow("SELECT type, status, created_at FROM taskservice.tasks")
    finally:
        await conn.close()
    assert row is not None
    assert (row["type"], row["status"]) == ("echo", "pending")
    assert row["created_at"] is not None


SNAPSHOT = """
SELECT 'column', table_name || '.' || column_name,
       data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '')
FROM information_schema.columns WHERE table_schema = 'taskservice'
UNION ALL
SELECT 'constraint', conrelid::regclass::text || ' ' || conname, pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'taskservice'::regnamespace
UNION ALL
SELECT 'index', indexname, indexdef FROM pg_indexes
WHERE schemaname = 'taskservice' OR indexname LIKE 'taskservice%'
UNION ALL
SELECT 'function', p.proname, pg_get_functiondef(p.oid)
FROM pg_proc p WHERE p.pronamespace = 'taskservice'::regnamespace
UNION ALL
SELECT 'trigger', tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname LIKE 'taskservice%'
UNION ALL
SELECT 'view', viewname, definition FROM pg_views WHERE schemaname = 'taskservice'
UNION ALL
SELECT 'status', procrastinate_status::text, status FROM taskservice.status_names
ORDER BY 1, 2
"""


async def _snapshot(url: str) -> list[tuple[str, str, str]]:
    conn = await asyncpg.connect(url)
    try:
        return [tuple(row) for row in await conn.fetch(SNAPSHOT)]
    finally:
        await conn.close()


async def test_schema_file_and_migrations_give_the_same_schema(
    empty_database_url: str, pg_server: Server
) -> None:
    """sql/schema.sql (what a fresh install gets) and sql/migrations (what an
    existing install walks through) must end in the same database."""
    await migrate(empty_database_url, from_schema_file=False)
    walked = await _snapshot(empty_database_url)
    name = f"taskservice_schema_file_{os.getpid()}"
    with janitor(pg_server, name):
        url = pg_server.url(name)
        assert await migrate(url) == migration_names()
        assert await _snapshot(url) == walked
    assert len(walked) > 50
