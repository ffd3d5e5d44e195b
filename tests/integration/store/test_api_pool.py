"""The API's pool gives connections back without asyncpg's reset query, yet
nothing a request leaves open reaches the next one."""

from __future__ import annotations

from taskservice.store import asyncpg_driver as db


async def test_a_transaction_left_open_is_rolled_back_when_given_back(database_url: str) -> None:
    pool = await db.create_pool(database_url, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("CREATE TABLE left_open (x int)")
        async with pool.acquire() as conn:  # the same connection: max_size=1
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT to_regclass('left_open')") is None
    finally:
        await pool.close()
