"""translated(): 503 material (DatabaseUnavailable) only for an unreachable database."""

from __future__ import annotations

import asyncpg
import pytest

from taskservice.errors import DatabaseError, DatabaseUnavailable
from taskservice.store.asyncpg_driver import translated


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connect call failed"),
        ConnectionResetError(),
        TimeoutError(),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.InterfaceError("connection is closed"),
    ],
)
def test_unreachable_database_is_unavailable(error: BaseException) -> None:
    with pytest.raises(DatabaseUnavailable), translated():
        raise error


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.InterfaceError("the server expects 2 arguments for this query, 1 was passed"),
        FileNotFoundError("sql/queries.sql"),
        PermissionError("denied"),
        KeyError("no_such_query"),
    ],
)
def test_programming_errors_are_not_unavailable(error: BaseException) -> None:
    with pytest.raises(type(error)), translated():
        raise error


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.UndefinedTableError("relation does not exist"),
        asyncpg.DataError("invalid input syntax for type integer"),
    ],
)
def test_refused_statement_is_a_database_error(error: BaseException) -> None:
    with pytest.raises(DatabaseError), translated():
        raise error
