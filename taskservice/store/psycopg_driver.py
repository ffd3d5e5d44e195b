"""The workers' seam to the database: named queries on Procrastinate's psycopg connections."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import psycopg.conninfo
from procrastinate import BaseConnector
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from taskservice.store.queries import query


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


async def fetch(conn: AsyncConnection[Any], name: str, /, **params: Any) -> list[dict[str, Any]]:
    """Run the named query on `conn`, inside the caller's transaction; return its rows."""
    q = query(name)
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(q.psycopg_text, q.psycopg_params(params))
        return await cursor.fetchall() if cursor.description else []


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
