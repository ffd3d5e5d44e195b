"""The API's seam to the database: an asyncpg pool and named queries, driver errors translated."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg

from taskservice.errors import DatabaseError, DatabaseUnavailable, UniqueViolation
from taskservice.store.queries import query

Pool = asyncpg.Pool
# Helpers take a pool or a connection (for queries inside a transaction).
Executor = asyncpg.Pool | asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
Connection = asyncpg.pool.PoolConnectionProxy

# What a database that restarts, stalls, drops connections or refuses new ones
# raises: the client may retry. Not here: asyncpg's other InterfaceErrors and
# DataErrors (a wrong argument, a driver misuse) and other OSErrors (a missing
# file): those are bugs, answered 500 with their traceback logged.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    ConnectionError,  # refused, reset, broken pipe
    TimeoutError,  # no free pooled connection, or no answer, within the pool's timeouts
    socket.gaierror,  # the host name does not resolve (DNS down)
    asyncpg.PostgresConnectionError,  # 08xxx: connection lost or refused
    asyncpg.OperatorInterventionError,  # 57xxx: admin shutdown, cannot connect now, canceled
    asyncpg.InsufficientResourcesError,  # 53xxx: too many connections, out of memory/disk
    # A connection whose server went away mid-protocol ("cannot switch to state
    # 12; another operation is in progress" after a terminated backend); the pool
    # replaces it.
    asyncpg.InternalClientError,
)
# asyncpg raises a bare InterfaceError for a connection that the server closed
# under it (no subclass): known by its message.
_CLOSED_CONNECTION_MESSAGES = ("connection is closed", "connection was closed")


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, _UNAVAILABLE):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and any(
        message in str(exc) for message in _CLOSED_CONNECTION_MESSAGES
    )


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Driver errors as the service's own: DatabaseUnavailable, UniqueViolation,
    DatabaseError. The one place that knows asyncpg's exception classes.

    Anything else (a programming error) goes through as it is."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        raise UniqueViolation(exc.constraint_name) from exc
    except Exception as exc:
        if _is_unavailable(exc):
            raise DatabaseUnavailable(str(exc) or type(exc).__name__) from exc
        if isinstance(exc, asyncpg.PostgresError):
            raise DatabaseError(str(exc), exc.sqlstate) from exc
        raise


class TimedPool(asyncpg.Pool):
    """An asyncpg pool whose `acquire()` gives up after `acquire_timeout` seconds
    by default, for every caller (asyncpg's own default is to wait for ever)."""

    __slots__ = ("_acquire_timeout",)

    def __init__(self, *args: Any, acquire_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None) -> Any:
        if timeout is None and not self.get_idle_size():
            timeout = self._acquire_timeout
        # With a connection idle nothing waits (asyncpg takes it before yielding),
        # and asyncpg's timeout would cost a task (wait_for) per statement.
        return super().acquire(timeout=timeout)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What the pool does to a connection given back, besides what asyncpg always
    does (roll back a transaction left open, drop listener callbacks): nothing.

    asyncpg's default reset is one more round trip per statement (`RESET ALL;
    UNLISTEN *; CLOSE ALL; pg_advisory_unlock_all()`) undoing what the service's
    pooled sessions never do: no statement run through this pool sets a session
    variable, listens, holds a cursor or an advisory lock (the listener and
    migrate have connections of their own; tests/unit/store/test_queries.py
    checks the named statements for it)."""


async def create_pool(
    database_url: str,
    *,
    max_size: int,
    acquire_timeout: float = 5.0,
    command_timeout: float = 30.0,
    session_settings: dict[str, str] | None = None,
) -> Pool:
    """An asyncpg pool that decodes JSON and keeps each statement prepared.

    Nothing waits for ever: getting a connection (reconnecting included) gives up
    after `acquire_timeout` seconds and a statement after `command_timeout`, both
    as DatabaseUnavailable. PostgreSQL may reuse a generic plan of a prepared
    statement (plan_cache_mode auto); statements marked `-- plan: custom` (the
    listing, whose optional filters `:x IS NULL OR col = :x` a generic plan cannot
    use indexes for) are planned for their own arguments at every call.
    `session_settings` (e.g. statement_timeout) apply to every connection."""
    pool = TimedPool(
        database_url,
        acquire_timeout=acquire_timeout,
        min_size=1,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        init=_init_connection,
        reset=_keep_session,
        command_timeout=command_timeout,
        timeout=acquire_timeout,  # to connect
        server_settings={
            "application_name": "taskservice-api",
            **(session_settings or {}),
        },
    )
    with translated():
        await pool
    return pool


async def ping_new_connection(database_url: str) -> None:
    """Open a connection outside the pool and run the `ping` query: whether the
    database accepts new connections (the pool's may outlive a full server).
    Callers bound it with asyncio.timeout."""
    q = query("ping")
    with translated():
        conn = await asyncpg.connect(
            database_url, server_settings={"application_name": "taskservice-health"}
        )
        try:
            await conn.fetchval(q.asyncpg_text)
        finally:
            await conn.close()


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
        if q.custom_plan:
            return await _fetch_custom_plan(db, q.asyncpg_text, q.asyncpg_args(params))
        rows: list[asyncpg.Record] = await db.fetch(q.asyncpg_text, *q.asyncpg_args(params))
    return rows


async def _fetch_custom_plan(db: Executor, text: str, args: list[Any]) -> list[asyncpg.Record]:
    """Run `text` as PostgreSQL's unnamed statement, which it plans for the
    arguments of this one call (a cached named statement may get a generic
    plan). One more round trip than a cached statement."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            return await _fetch_custom_plan(conn, text, args)
    statement = await db.prepare(text, name="")
    rows: list[asyncpg.Record] = await statement.fetch(*args)
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
