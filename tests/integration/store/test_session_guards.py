"""Database-side guards on the service's sessions: statement_timeout and
idle_in_transaction_session_timeout on the API's and the workers' pools."""

from __future__ import annotations

import asyncio

import pytest

from taskservice.errors import DatabaseError, DatabaseUnavailable
from taskservice.registry import TaskRegistry
from taskservice.settings import Settings
from taskservice.store import asyncpg_driver as db
from taskservice.worker.app import build_queue_app


@pytest.fixture
def guarded(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"statement_timeout_seconds": 1.5, "idle_in_transaction_timeout_seconds": 2}
    )


async def _run_away(pool: db.Pool) -> None:
    async with pool.acquire() as conn:
        with db.translated():
            await conn.execute("SELECT pg_sleep(10)")


async def _idle_in_transaction(pool: db.Pool, seconds: float) -> None:
    with db.translated():
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1")
            await asyncio.sleep(seconds)
            await conn.execute("SELECT 1")


async def test_api_pool_sessions_have_the_guards(guarded: Settings) -> None:
    assert guarded.database_url is not None
    pool = await db.create_pool(
        guarded.database_url, max_size=2, session_settings=guarded.session_guards()
    )
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW statement_timeout") == "1500ms"
            assert await conn.fetchval("SHOW idle_in_transaction_session_timeout") == "2s"
        with pytest.raises(DatabaseUnavailable, match="statement timeout"):
            await _run_away(pool)
        # A transaction left open is ended by the server; the pool goes on.
        with pytest.raises((DatabaseUnavailable, DatabaseError)):
            await _idle_in_transaction(pool, seconds=3)
        assert await pool.fetchval("SELECT 1") == 1
    finally:
        await pool.close()


async def test_worker_pool_sessions_have_the_guards(
    guarded: Settings, registry: TaskRegistry
) -> None:
    app = build_queue_app(guarded, registry, pool_size=2)
    async with app.open_async():
        pool = app.connector.pool  # type: ignore[attr-defined]  # PsycopgConnector's
        async with pool.connection() as conn:
            cursor = await conn.execute("SHOW statement_timeout")
            assert await cursor.fetchone() == ("1500ms",)
            cursor = await conn.execute("SHOW idle_in_transaction_session_timeout")
            assert await cursor.fetchone() == ("2s",)
            cursor = await conn.execute("SHOW application_name")
            assert await cursor.fetchone() == ("taskservice-queue",)


def test_guards_keep_options_the_database_url_gives(settings: Settings) -> None:
    from taskservice.worker.app import _session_options

    url = f"{settings.database_url}?options=-c%20search_path%3Dpublic"
    options = _session_options(settings.model_copy(update={"database_url": url}))
    assert options.startswith("-c search_path=public ")
    assert "-c statement_timeout=60000" in options
