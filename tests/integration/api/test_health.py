"""Readiness and timeouts: the API answers, with a reason, whatever the database does."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import asyncpg
import httpx

from taskservice.api.app import create_app
from taskservice.registry import TaskRegistry
from taskservice.settings import Settings
from taskservice.worker.resilient import DatabaseLink
from tests.helpers import submit


@contextlib.asynccontextmanager
async def _client(
    settings: Settings, registry: TaskRegistry, worker: DatabaseLink | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, registry=registry, worker=worker)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://taskservice",
        ) as http,
    ):
        yield http


@contextlib.asynccontextmanager
async def _locked(database_url: str, table: str) -> AsyncIterator[None]:
    """`table` locked by another session, as a stalled database would hold it."""
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")  # test-only SQL
            yield
    finally:
        await conn.close()


async def test_ready_answers_503_when_the_database_stalls(
    settings: Settings, registry: TaskRegistry, database_url: str
) -> None:
    async with (
        _client(settings, registry) as http,
        _locked(database_url, "taskservice.schema_migrations"),
    ):
        started = time.monotonic()
        response = await asyncio.wait_for(http.get("/health/ready"), timeout=10)
        took = time.monotonic() - started
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert "did not answer" in response.json()["reason"]
    assert took < 5


async def test_a_stalled_statement_is_503_with_retry_after(
    settings: Settings, registry: TaskRegistry, database_url: str
) -> None:
    fast = settings.model_copy(update={"api_command_timeout_seconds": 1.0})
    async with _client(fast, registry) as http:
        task = await submit(http, type="echo", params={"value": 1})
        async with _locked(database_url, "procrastinate_jobs"):
            started = time.monotonic()
            response = await asyncio.wait_for(http.get(f"/tasks/{task['id']}"), timeout=10)
            took = time.monotonic() - started
        assert response.status_code == 503
        assert response.headers["retry-after"]
        assert took < 5
        assert (await http.get(f"/tasks/{task['id']}")).status_code == 200


async def test_up_is_ready_only_while_its_worker_can_work(
    settings: Settings, registry: TaskRegistry
) -> None:
    link = DatabaseLink()
    async with _client(settings, registry, worker=link) as http:
        starting = await http.get("/health/ready")
        assert starting.status_code == 503
        assert starting.json()["reason"] == "the worker is starting"
        link.running = True
        assert (await http.get("/health/ready")).status_code == 200
        link.down_since = time.monotonic()
        link.last_error = "OperationalError: connection refused"
        reconnecting = await http.get("/health/ready")
        assert reconnecting.status_code == 503
        assert reconnecting.headers["retry-after"]
        assert "reconnecting" in reconnecting.json()["reason"]
        assert reconnecting.json()["database"] is True  # the API's own database is fine


async def test_unexpected_error_is_a_500_in_the_usual_shape(
    settings: Settings, registry: TaskRegistry
) -> None:
    app = create_app(settings, registry=registry)

    @app.get("/boom")
    async def boom() -> None:
        raise FileNotFoundError("an OSError that is a bug, not an outage")

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://taskservice",
        ) as http,
    ):
        response = await http.get("/boom")
    assert response.status_code == 500
    assert response.json()["detail"][0]["type"] == "internal"
    assert "retry-after" not in response.headers
