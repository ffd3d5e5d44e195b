"""`taskservice migrate`: Procrastinate's schema, then the service's migrations and views."""

from __future__ import annotations

import logging
from pathlib import Path

import asyncpg
from procrastinate.schema import SchemaManager

from taskservice.store import asyncpg_driver as db
from taskservice.store.queries import sql_dir

logger = logging.getLogger(__name__)

# Any constant works, as long as nothing else takes it: it makes concurrent
# `migrate` runs (several replicas starting together) queue up one by one.
_ADVISORY_LOCK_KEY = 0x7461736B73657276  # "taskserv"

PROCRASTINATE_SCHEMA = "procrastinate-3.10"


def migration_names() -> list[str]:
    """Every migration the code expects, in the order they apply."""
    return [PROCRASTINATE_SCHEMA, *(p.stem for p in _migration_files())]


def _migration_files() -> list[Path]:
    return sorted((sql_dir() / "migrations").glob("*.sql"))


async def migrate(database_url: str, *, from_schema_file: bool = True) -> list[str]:
    """Bring the database to the current schema; return the names of what was applied.

    A database without the service's schema gets sql/schema.sql in one go
    (unless `from_schema_file` is false: tests walk the migrations instead);
    one with an older version gets the missing migrations. Safe to run on every
    start and from several processes at once."""
    with db.translated():
        conn = await asyncpg.connect(database_url)
        try:
            await db.execute(conn, "take_migration_lock", key=_ADVISORY_LOCK_KEY)
            try:
                return await _migrate_locked(conn, from_schema_file)
            finally:
                await db.execute(conn, "release_migration_lock", key=_ADVISORY_LOCK_KEY)
        finally:
            await conn.close()


async def _migrate_locked(conn: asyncpg.Connection, from_schema_file: bool) -> list[str]:
    await db.execute(conn, "create_migrations_table")
    done = {row["name"] for row in await db.fetch(conn, "applied_migrations")}
    applied: list[str] = []

    if PROCRASTINATE_SCHEMA not in done:
        async with conn.transaction():
            # An existing Procrastinate install is adopted as it is.
            if not await db.fetchval(conn, "procrastinate_installed"):
                await conn.execute(SchemaManager.get_schema())
            await _record(conn, PROCRASTINATE_SCHEMA)
        applied.append(PROCRASTINATE_SCHEMA)

    pending = [path for path in _migration_files() if path.stem not in done]
    if pending and from_schema_file and done <= {PROCRASTINATE_SCHEMA}:
        async with conn.transaction():
            await conn.execute((sql_dir() / "schema.sql").read_text(encoding="utf-8"))
            for path in pending:
                await _record(conn, path.stem)
        applied.extend(path.stem for path in pending)
        pending = []
    for path in pending:
        async with conn.transaction():
            await conn.execute(path.read_text(encoding="utf-8"))
            await _record(conn, path.stem)
        applied.append(path.stem)

    async with conn.transaction():
        for views in ("views.sql", "reporting.sql"):
            await conn.execute((sql_dir() / views).read_text(encoding="utf-8"))
    for name in applied:
        logger.info("applied migration %s", name)
    return applied


async def _record(conn: asyncpg.Connection, name: str) -> None:
    await db.execute(conn, "record_migration", name=name)
