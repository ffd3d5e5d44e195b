"""`taskservice migrate`: from empty, idempotent, safe to run concurrently."""

from __future__ import annotations

import asyncio

import asyncpg

from taskservice.migrate import migrate, migration_names


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
