"""The API's seam to the database: an asyncpg pool and named queries, driver errors translated."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg

from taskservice.errors import DatabaseError, DatabaseUnavailable, UniqueViolation
from taskservice.store.queries import query

Pool = asyncpg.Pool
# Helpers take a pool or a connection (for queries inside a transaction).
Executor = asyncpg.Pool | asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
Connection = asyncpg.pool.PoolConnectionProxy

# What a database that restarts, drops connections or refuses new ones raises:
# the client may retry.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,  # 08xxx: connection lost or refused
    asyncpg.OperatorInterventionError,  # 57xxx: admin shutdown, cannot connect now
    # A connection whose server went away mid-protocol; the pool replaces it.
    asyncpg.InternalClientError,
)


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Driver errors as the service's own: DatabaseUnavailable, UniqueViolation,
    DatabaseError. The one place that knows asyncpg's exception classes."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        raise UniqueViolation(exc.constraint_name) from exc
    except _UNAVAILABLE as exc:
        raise DatabaseUnavailable(str(exc) or type(exc).__name__) from exc
    except asyncpg.PostgresError as exc:
        raise DatabaseError(str(exc), exc.sqlstate) from exc


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def create_pool(
    database_url: str, *, max_size: int, session_settings: dict[str, str] | None = None
) -> Pool:
    """An asyncpg pool that decodes JSON and plans each query for its own arguments.

    Custom plans matter: the listing query has optional filters
    (`:x IS NULL OR col = :x`), which a generic plan cannot use indexes for.
    `session_settings` (e.g. statement_timeout) apply to every connection."""
    with translated():
        pool = await asyncpg.create_pool(
            database_url,
            min_size=1,
            max_size=max_size,
            init=_init_connection,
            server_settings={
                "application_name": "taskservice-api",
                "plan_cache_mode": "force_custom_plan",
                **(session_settings or {}),
            },
        )
    assert pool is not None
    return pool


@contextlib.asynccontextmanager
async def transaction(pool: Pool) -> AsyncIterator[Connection]:
    """One pooled connection in a transaction, committed when the block ends."""
    with translated():
        async with pool.acquire() as conn, conn.transaction():
            yield conn


async def fetch(db: Executor, name: str, /, **params: Any) -> list[asyncpg.Record]:
    """Run the named query; return its rows."""
    q = query(name)
    with translated():
        rows: list[asyncpg.Record] = await db.fetch(q.asyncpg_text, *q.asyncpg_args(params))
    return rows


async def fetchrow(db: Executor, name: str, /, **params: Any) -> asyncpg.Record | None:
    """Run the named query; return its first row, if any."""
    q = query(name)
    with translated():
        row: asyncpg.Record | None = await db.fetchrow(q.asyncpg_text, *q.asyncpg_args(params))
    return row


async def fetchval(db: Executor, name: str, /, **params: Any) -> Any:
    """Run the named query; return the first column of its first row (None if no row)."""
    q = query(name)
    with translated():
        return await db.fetchval(q.asyncpg_text, *q.asyncpg_args(params))


async def execute(db: Executor, name: str, /, **params: Any) -> None:
    """Run the named query for its effect."""
    q = query(name)
    with translated():
        await db.execute(q.asyncpg_text, *q.asyncpg_args(params))
