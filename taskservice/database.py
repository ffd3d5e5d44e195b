"""The API's asyncpg pool, named-query helpers, and where the database URL comes from."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from taskservice.queries import query
from taskservice.settings import Settings

Pool = asyncpg.Pool
# Helpers take a pool or a connection (for queries inside a transaction).
Executor = asyncpg.Pool | asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


def resolve_database_url(settings: Settings) -> Settings:
    """Settings with a database URL: the configured one, or the embedded server's."""
    if settings.database_url:
        return settings
    from taskservice.embedded import start_embedded_postgres

    url = start_embedded_postgres(settings.data_dir)
    return settings.model_copy(update={"database_url": url})


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def create_pool(database_url: str, *, max_size: int) -> Pool:
    """An asyncpg pool that decodes JSON and plans each query for its own arguments.

    Custom plans matter: the listing query has optional filters
    (`:x IS NULL OR col = :x`), which a generic plan cannot use indexes for."""
    pool = await asyncpg.create_pool(
        database_url,
        min_size=1,
        max_size=max_size,
        init=_init_connection,
        server_settings={
            "application_name": "taskservice-api",
            "plan_cache_mode": "force_custom_plan",
        },
    )
    assert pool is not None
    return pool


async def fetch(db: Executor, name: str, /, **params: Any) -> list[asyncpg.Record]:
    """Run the named query; return its rows."""
    q = query(name)
    rows: list[asyncpg.Record] = await db.fetch(q.asyncpg_text, *q.asyncpg_args(params))
    return rows


async def fetchrow(db: Executor, name: str, /, **params: Any) -> asyncpg.Record | None:
    """Run the named query; return its first row, if any."""
    q = query(name)
    row: asyncpg.Record | None = await db.fetchrow(q.asyncpg_text, *q.asyncpg_args(params))
    return row


async def fetchval(db: Executor, name: str, /, **params: Any) -> Any:
    """Run the named query; return the first column of its first row (None if no row)."""
    q = query(name)
    return await db.fetchval(q.asyncpg_text, *q.asyncpg_args(params))


async def execute(db: Executor, name: str, /, **params: Any) -> None:
    """Run the named query for its effect."""
    q = query(name)
    await db.execute(q.asyncpg_text, *q.asyncpg_args(params))
