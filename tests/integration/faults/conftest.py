"""Fixtures of the fault suite: a disposable PostgreSQL with a migrated database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from taskservice.store.migrate import migrate
from tests.disposable_pg import DisposablePostgres, disposable_postgres


@pytest.fixture
def pg() -> Iterator[DisposablePostgres]:
    """A PostgreSQL server of this test's own: restart, stop or fill it at will."""
    with disposable_postgres(max_connections=40) as server:
        yield server


@pytest.fixture
def pg_url(pg: DisposablePostgres) -> str:
    """A migrated `taskservice` database on `pg`."""
    url = pg.create_database("taskservice")
    asyncio.run(migrate(url))
    return url
