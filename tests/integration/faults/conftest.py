"""Fixtures of the fault suite: a connection to the test database with the executions table."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.executions import create_table


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    await create_table(database_url)
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()
