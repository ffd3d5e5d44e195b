"""`taskservice migrate`: from empty, idempotent, safe to run concurrently."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import asyncpg
import pytest
from procrastinate.schema import SchemaManager

from taskservice.errors import MigrationLocked, SchemaMismatch
from taskservice.store.migrate import migrate, migration_names, views_record
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


# --- Only what changed: the views (CREATE OR REPLACE VIEW locks them) -------------


async def _open_analyst_transaction(url: str) -> asyncpg.Connection:
    """An analyst's long query: a transaction that read taskservice.tasks and stays open."""
    analyst = await asyncpg.connect(url)
    await analyst.execute("BEGIN")
    await analyst.fetch("SELECT count(*) FROM taskservice.report_tasks_hourly")
    return analyst


async def test_migrate_on_start_does_not_wait_for_an_analysts_transaction(
    database_url: str,
) -> None:
    """Nothing changed, so nothing is locked: a second start does not queue behind
    the analyst, and reads do not queue behind the start."""
    analyst = await _open_analyst_transaction(database_url)
    try:
        assert await asyncio.wait_for(migrate(database_url), timeout=10) == []
        reader = await asyncpg.connect(database_url)
        try:
            await asyncio.wait_for(reader.fetch("SELECT * FROM taskservice.tasks"), timeout=5)
        finally:
            await reader.close()
    finally:
        await analyst.close()


async def _forget_views(url: str) -> None:
    """As if the code shipped new views: the recorded views hash no longer matches."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DELETE FROM taskservice.schema_migrations WHERE name LIKE 'views-%'")
        await conn.execute("DROP VIEW taskservice.report_failure_rate")
    finally:
        await conn.close()


async def test_changed_views_are_applied(database_url: str) -> None:
    await _forget_views(database_url)
    assert await migrate(database_url) == [views_record()]
    assert await migrate(database_url) == []
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('taskservice.report_failure_rate')")
    finally:
        await conn.close()


async def test_a_step_behind_a_held_lock_fails_fast_and_names_the_holder(
    database_url: str,
) -> None:
    """lock_timeout: the step lets go after each short wait (so reads are not
    queued behind it for longer), retries, then fails saying who is in the way."""
    await _forget_views(database_url)
    analyst = await _open_analyst_transaction(database_url)
    try:
        started = time.monotonic()
        attempt = asyncio.create_task(
            migrate(database_url, lock_timeout_seconds=0.3, lock_wait_seconds=2)
        )
        await asyncio.sleep(0.5)  # the step is retrying now
        reader = await asyncpg.connect(database_url)
        try:  # an API read waits at most one lock_timeout, not for the analyst
            await asyncio.wait_for(reader.fetch("SELECT * FROM taskservice.tasks"), timeout=5)
        finally:
            await reader.close()
        with pytest.raises(MigrationLocked) as failure:
            await asyncio.wait_for(attempt, timeout=20)
        assert time.monotonic() - started < 15
        message = str(failure.value)
        assert "the views" in message
        assert f"pid {analyst.get_server_pid()}" in message
    finally:
        await analyst.close()


async def test_a_step_behind_a_held_lock_goes_through_once_the_lock_is_free(
    database_url: str,
) -> None:
    await _forget_views(database_url)
    analyst = await _open_analyst_transaction(database_url)
    try:
        attempt = asyncio.create_task(
            migrate(database_url, lock_timeout_seconds=0.3, lock_wait_seconds=30)
        )
        await asyncio.sleep(1)
        assert not attempt.done()
        await analyst.execute("ROLLBACK")
        assert await asyncio.wait_for(attempt, timeout=20) == [views_record()]
    finally:
        await analyst.close()


# --- Procrastinate upgrades: its own shipped migrations ----------------------------

PROCRASTINATE_SNAPSHOT = """
SELECT 'column', table_name || '.' || column_name,
       data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '')
FROM information_schema.columns
WHERE table_schema = 'public' AND table_name LIKE 'procrastinate%'
UNION ALL
SELECT 'constraint', conrelid::regclass::text || ' ' || conname, pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'function', p.oid::regprocedure::text, pg_get_functiondef(p.oid)
FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
UNION ALL
SELECT 'trigger', tgname, pg_get_triggerdef(oid) FROM pg_trigger
WHERE NOT tgisinternal AND tgname LIKE 'procrastinate%'
UNION ALL
SELECT 'enum', t.typname, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid GROUP BY t.typname
ORDER BY 1, 2
"""


def _release_of(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in path.name.split("_", 1)[0].split("."))


def _shipped_migrations() -> list[tuple[Path, str]]:
    """Procrastinate's migration files, in order, with their text."""
    files = sorted(Path(SchemaManager.get_migrations_path()).glob("*.sql"))
    return [(path, path.read_text(encoding="utf-8")) for path in files]


async def _procrastinate_release_schema(url: str, release: tuple[int, int]) -> list[str]:
    """The Procrastinate schema of an older release, built from the migrations the
    installed Procrastinate ships (each file is named after the release that
    introduced it): every file up to that release. Returns the ones left out."""
    files = _shipped_migrations()
    conn = await asyncpg.connect(url)
    try:
        for path, text in files:
            if _release_of(path)[:2] <= release:
                async with conn.transaction():
                    await conn.execute(text)
    finally:
        await conn.close()
    return ["procrastinate-" + p.stem for p, _ in files if _release_of(p)[:2] > release]


async def _procrastinate_snapshot(url: str) -> list[tuple[str, str, str]]:
    conn = await asyncpg.connect(url)
    try:
        return [tuple(row) for row in await conn.fetch(PROCRASTINATE_SNAPSHOT)]
    finally:
        await conn.close()


async def test_procrastinate_upgrade_from_3_3_applies_its_shipped_migrations(
    empty_database_url: str, database_url: str
) -> None:
    """3.3 is the last release before the newest shipped migrations (03.04.00_*)."""
    await _upgrade_from(empty_database_url, database_url, (3, 3))


async def test_procrastinate_upgrade_from_the_previous_minor_release(
    empty_database_url: str, database_url: str
) -> None:
    """3.9 is the previous minor release; its schema is 3.10's: nothing to apply."""
    await _upgrade_from(empty_database_url, database_url, (3, 9))


async def _upgrade_from(url: str, fresh_url: str, release: tuple[int, int]) -> None:
    """A database that an earlier taskservice set up on an older Procrastinate
    (recorded then as `procrastinate-X.Y`) gets Procrastinate's own migrations up
    to the installed release, and ends with the schema a fresh install has."""
    expected = await _procrastinate_release_schema(url, release)
    assert bool(expected) == (release < (3, 4))
    conn = await asyncpg.connect(url)
    try:  # what the earlier taskservice recorded
        await conn.execute(
            "CREATE SCHEMA taskservice; CREATE TABLE taskservice.schema_migrations "
            "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await conn.execute(
            "INSERT INTO taskservice.schema_migrations VALUES ($1)",
            "procrastinate-{}.{}".format(*release),
        )
    finally:
        await conn.close()
    applied = await migrate(url)
    assert applied[: len(expected) + 1] == [*expected, migration_names()[0]]
    assert await _procrastinate_snapshot(url) == await _procrastinate_snapshot(fresh_url)
    assert await migrate(url) == []


async def test_an_older_procrastinate_schema_installed_by_someone_else_is_refused(
    empty_database_url: str,
) -> None:
    """Nothing says which release an unrecorded schema is: adopted only when it has
    what the installed Procrastinate uses, else a clear error, nothing recorded."""
    await _procrastinate_release_schema(empty_database_url, (3, 3))
    with pytest.raises(SchemaMismatch, match="procrastinate_retry_job_v2"):
        await migrate(empty_database_url)
    assert await _recorded(empty_database_url) == []
