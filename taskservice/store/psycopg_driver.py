"""The workers' seam to the database: named queries on Procrastinate's psycopg connections."""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from typing import Any

import psycopg
import psycopg.conninfo
from procrastinate import BaseConnector, PsycopgConnector
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from taskservice.errors import DatabaseError, DatabaseUnavailable
from taskservice.store.queries import query

# A pooled connection checked (a round trip) less than this long ago is handed
# out unchecked: a busy worker would otherwise pay one extra round trip per
# statement. One that died meanwhile fails its statement with a connection
# error, which the worker rides through like any outage (see worker.resilient).
RECHECK_AFTER_SECONDS = 1.0


def purging_pool(**kwargs: Any) -> AsyncConnectionPool[Any]:
    """Procrastinate's pool (its `pool_factory`), with three changes: its
    connections are in autocommit, a pooled connection found dead has every
    idle one tested at once, and a connection is tested at most once every
    RECHECK_AFTER_SECONDS.

    Autocommit: each of Procrastinate's statements is one call, and ours that
    need a transaction open one (`conn.transaction()`), so the BEGIN and COMMIT
    round trips around every single statement are spared. (Not through the
    pool's `kwargs`: Procrastinate's LISTEN connection adds its own autocommit.)

    When the server restarts or backends are terminated, all idle connections
    die together; psycopg_pool finds them one getconn at a time, pausing 1, 2,
    4 s... between them, so a caller could wait past its timeout for a good one."""
    pool: AsyncConnectionPool[Any]
    purges: set[asyncio.Task[None]] = set()
    checked_at: weakref.WeakKeyDictionary[AsyncConnection[Any], float] = weakref.WeakKeyDictionary()

    async def check(conn: AsyncConnection[Any]) -> None:
        now = time.monotonic()
        if not conn.broken and now - checked_at.get(conn, -math.inf) < RECHECK_AFTER_SECONDS:
            return
        try:
            await AsyncConnectionPool.check_connection(conn)
        except Exception:
            if not purges:
                purge = asyncio.create_task(pool.check())
                purges.add(purge)
                purge.add_done_callback(purges.discard)
            raise
        checked_at[conn] = now

    async def configure(conn: AsyncConnection[Any]) -> None:
        await conn.set_autocommit(True)

    pool = AsyncConnectionPool(**{**kwargs, "check": check, "configure": configure})
    return pool


async def execute(connector: BaseConnector, name: str, /, **params: Any) -> None:
    """Run the named query on Procrastinate's pool, in a transaction of its own."""
    q = query(name)
    # Shielded: an abort cancels the task, but what it started writing must finish.
    await asyncio.shield(connector.execute_query_async(q.psycopg_text, **q.psycopg_params(params)))


async def fetchrow(connector: BaseConnector, name: str, /, **params: Any) -> dict[str, Any] | None:
    """Run the named query on Procrastinate's pool; return its first row, if any."""
    q = query(name)
    # Shielded: as in execute().
    row: dict[str, Any] | None = await asyncio.shield(
        connector.execute_query_one_async(q.psycopg_text, **q.psycopg_params(params))
    )
    return row


async def fetch_all(connector: BaseConnector, name: str, /, **params: Any) -> list[dict[str, Any]]:
    """Run the named query on Procrastinate's pool; return all its rows."""
    q = query(name)
    # Shielded: as in execute().
    rows: list[dict[str, Any]] = await asyncio.shield(
        connector.execute_query_all_async(q.psycopg_text, **q.psycopg_params(params))
    )
    return rows


async def fetch_all_cancellable(
    connector: BaseConnector, name: str, /, **params: Any
) -> list[dict[str, Any]]:
    """Run the named query on Procrastinate's pool; return its rows. Not shielded:
    for statements whose caller must see a cancellation (a claim)."""
    q = query(name)
    rows: list[dict[str, Any]] = await connector.execute_query_all_async(
        q.psycopg_text, **q.psycopg_params(params)
    )
    return rows


async def ping(conninfo: str) -> None:
    """Open a connection of its own (not from a pool, whose connections may be dead)
    and run the `ping` query; raises psycopg.OperationalError while the database
    cannot be reached. Callers bound it with asyncio.timeout."""
    q = query("ping")
    conn = await AsyncConnection.connect(
        conninfo, autocommit=True, connect_timeout=5, application_name="taskservice-probe"
    )
    async with conn:
        await conn.execute(q.psycopg_text)


async def fetch(conn: AsyncConnection[Any], name: str, /, **params: Any) -> list[dict[str, Any]]:
    """Run the named query on `conn`, inside the caller's transaction; return its rows."""
    q = query(name)
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(q.psycopg_text, q.psycopg_params(params))
        return await cursor.fetchall() if cursor.description else []


async def execute_configured(connector: BaseConnector, sql: str) -> int | None:
    """Run `sql`, a statement the deployment configured (TASKSERVICE_SQL_<NAME>,
    never text from a request), in one transaction on a pooled connection with
    the workers' session limits; the rows it affected (None when PostgreSQL
    reports no count). Raises DatabaseError (with its SQLSTATE) when the database
    refuses it, DatabaseUnavailable when the connection is lost."""
    if not isinstance(connector, PsycopgConnector):
        raise TypeError("configured statements run on Procrastinate's psycopg connector")
    try:
        async with connector.pool.connection() as conn, conn.cursor() as cursor:
            # Not a named query: the operator wrote this SQL in the configuration.
            await cursor.execute(sql)
            rows = cursor.rowcount
    except psycopg.Error as exc:
        if exc.sqlstate is None or exc.sqlstate.startswith("08"):
            raise DatabaseUnavailable(str(exc) or type(exc).__name__) from exc
        raise DatabaseError(str(exc), exc.sqlstate) from exc
    except OSError as exc:
        raise DatabaseUnavailable(str(exc) or type(exc).__name__) from exc
    return rows if rows >= 0 else None


# The driver's errors, for callers that must tell an outage from a refusal
# without importing psycopg themselves.
DriverError = psycopg.Error


def connection_lost(exc: BaseException) -> bool:
    """The database could not be reached, as opposed to refusing the statement."""
    return isinstance(exc, psycopg.OperationalError | OSError)


def session_options(database_url: str, settings: dict[str, str]) -> str:
    """libpq `options` setting `settings` for each session, after any the database
    URL gives (a keyword argument replaces the URL's own)."""
    given = psycopg.conninfo.conninfo_to_dict(database_url).get("options")
    guards = [f"-c {name}={value}" for name, value in settings.items()]
    return " ".join([*([str(given)] if given else []), *guards])


SyncConnection = psycopg.Connection[tuple[object, ...]]


def connect_sync(conninfo: str, *, timeout: float, application_name: str) -> SyncConnection:
    """A blocking autocommit connection of its own (for a thread)."""
    return psycopg.connect(
        conninfo,
        autocommit=True,
        connect_timeout=max(1, int(timeout)),
        application_name=application_name,
    )


def execute_sync(conn: SyncConnection, name: str, /, **params: Any) -> None:
    """Run the named query on a blocking connection."""
    q = query(name)
    conn.execute(q.psycopg_text, q.psycopg_params(params))
