"""The API key cache: a revoked key, and the first key of an open service, count
within milliseconds of their commit (the api_keys trigger's notification), not
after TASKSERVICE_API_KEY_CACHE_SECONDS; nothing is trusted while the listener
is down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from taskservice.api.app import create_app
from taskservice.models.keys import Scope
from taskservice.registry import TaskRegistry
from taskservice.services import keys as key_service
from taskservice.services.keys import KeyCache
from taskservice.settings import Settings
from taskservice.store import asyncpg_driver as db
from taskservice.store.listener import EventListener
from tests.integration.api.test_auth import MakeKey, bearer, make_key  # noqa: F401 - fixture

# Longer than any test: only a notification can make these tests pass.
TTL = 600.0
# How soon a change must count (it takes a few milliseconds on loopback).
PROMPTLY = 2.0


@pytest.fixture
async def served(settings: Settings, registry: TaskRegistry) -> AsyncIterator[FastAPI]:
    app = create_app(settings.model_copy(update={"api_key_cache_seconds": TTL}), registry=registry)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def http(served: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=served)
    async with httpx.AsyncClient(transport=transport, base_url="http://taskservice") as client:
        yield client


async def _until_status(
    client: httpx.AsyncClient, status: int, headers: dict[str, str] | None = None
) -> float:
    """Seconds until GET /tasks answers `status` (fails past PROMPTLY)."""
    start = time.monotonic()
    while (await client.get("/tasks", headers=headers)).status_code != status:
        assert time.monotonic() - start < PROMPTLY, f"still not {status} after {PROMPTLY} s"
    return time.monotonic() - start


async def _revoke_unannounced(db_conn: asyncpg.Connection, name: str) -> None:
    """Revoke without the trigger's notification: what only the TTL would catch."""
    async with db_conn.transaction():
        await db_conn.execute(
            "ALTER TABLE taskservice.api_keys DISABLE TRIGGER taskservice_announce_api_key_change"
        )
        await db_conn.execute(
            "UPDATE taskservice.api_keys SET revoked_at = now() WHERE name = $1", name
        )
        await db_conn.execute(
            "ALTER TABLE taskservice.api_keys ENABLE TRIGGER taskservice_announce_api_key_change"
        )


async def _announced(served: FastAPI, change: Awaitable[str]) -> str:
    """Await `change` to the keys, then until this process has heard of it (its
    notification would clear what is cached after it)."""
    cache: KeyCache = served.state.key_cache
    before = cache.generation
    result = await change
    start = time.monotonic()
    while cache.generation == before:
        assert time.monotonic() - start < PROMPTLY, "the change was never announced"
        await asyncio.sleep(0.001)
    return result


async def test_a_key_is_answered_from_the_cache_until_a_change_is_announced(
    served: FastAPI,
    http: httpx.AsyncClient,
    make_key: MakeKey,  # noqa: F811 - the fixture
    db: asyncpg.Connection,
    database_url: str,
) -> None:
    key = bearer(await _announced(served, make_key("cached", Scope.READ)))
    assert (await http.get("/tasks", headers=key)).status_code == 200
    await _revoke_unannounced(db, "cached")
    # Nothing told this process: it still trusts what it read (for up to the TTL).
    assert (await http.get("/tasks", headers=key)).status_code == 200

    other = bearer(await make_key("other", Scope.READ))
    assert (await http.get("/tasks", headers=other)).status_code == 200
    pool = await db_pool(database_url)
    try:
        await key_service.revoke_key(pool=pool, name="other")
    finally:
        await pool.close()
    # The revoke's notification clears the cache: both are refused.
    await _until_status(http, 401, other)
    assert (await http.get("/tasks", headers=key)).status_code == 401


async def test_the_first_key_ends_the_open_mode_promptly(
    http: httpx.AsyncClient,
    make_key: MakeKey,  # noqa: F811 - the fixture
) -> None:
    assert (await http.get("/tasks")).status_code == 200
    assert (await http.get("/tasks")).status_code == 200  # from the cache now
    await make_key("first", Scope.ADMIN)
    await _until_status(http, 401)


async def test_nothing_is_trusted_while_the_listener_is_down(
    served: FastAPI,
    http: httpx.AsyncClient,
    make_key: MakeKey,  # noqa: F811 - the fixture
    db: asyncpg.Connection,
) -> None:
    key = bearer(await _announced(served, make_key("watched", Scope.READ)))
    assert (await http.get("/tasks", headers=key)).status_code == 200
    listener: EventListener = served.state.listener
    await listener.stop()
    assert not listener.connected.is_set()
    await _revoke_unannounced(db, "watched")
    assert (await http.get("/tasks", headers=key)).status_code == 401


async def db_pool(database_url: str) -> db.Pool:
    return await db.create_pool(database_url, max_size=1)
