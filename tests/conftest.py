"""Fixtures: a real PostgreSQL, a migrated template, a fresh database per test."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from taskservice.api.app import create_app
from taskservice.metrics import Metrics
from taskservice.registry import TaskRegistry, load_registry
from taskservice.settings import Settings
from taskservice.store.migrate import migrate
from taskservice.worker.runner import run_worker
from tests.executions import create_table
from tests.pg import Server, find_server

_counter = itertools.count()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.Function) and asyncio.iscoroutinefunction(item.obj):
            item.add_marker(pytest.mark.anyio)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    server, handle = find_server()
    yield server
    if handle is not None:
        handle.cleanup()


def janitor(server: Server, dbname: str, **kwargs: Any) -> DatabaseJanitor:
    """pytest-postgresql's janitor for database `dbname` on `server`."""
    return DatabaseJanitor(
        user=server.user,
        host=server.host,
        port=server.port,
        password=server.password,
        dbname=dbname,
        **kwargs,
    )


@pytest.fixture(scope="session")
def template_db(pg_server: Server) -> Iterator[str]:
    """A database migrated once; every test gets a copy of it."""
    name = f"taskservice_template_{os.getpid()}"
    template = janitor(pg_server, name, as_template=True)
    template.drop()
    with template:
        asyncio.run(migrate(pg_server.url(name)))
        yield name


@pytest.fixture
def database_url(pg_server: Server, template_db: str) -> Iterator[str]:
    """A fresh database, cloned from the migrated template, dropped after the test."""
    name = f"taskservice_test_{os.getpid()}_{next(_counter)}"
    with janitor(pg_server, name, template_dbname=template_db):
        yield pg_server.url(name)


@pytest.fixture
def empty_database_url(pg_server: Server) -> Iterator[str]:
    """A fresh database with nothing in it, dropped after the test."""
    name = f"taskservice_empty_{os.getpid()}_{next(_counter)}"
    with janitor(pg_server, name):
        yield pg_server.url(name)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test's database, for what the API does not show."""
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@pytest.fixture
async def executions(database_url: str) -> None:
    """The table the `recorded` task type writes each execution to (tests/executions.py)."""
    await create_table(database_url)


@pytest.fixture
def settings(database_url: str, tmp_path: Any) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path,
        migrate_on_start=False,
        poll_interval=0.2,
        concurrency=4,
        api_pool_size=4,
        shutdown_grace_seconds=5,
        metrics_port=None,
    )


@pytest.fixture
def registry() -> TaskRegistry:
    return load_registry(["tests.task_types"])


@pytest.fixture
async def client(settings: Settings, registry: TaskRegistry) -> AsyncIterator[httpx.AsyncClient]:
    """The real app, lifespan and all, over an in-process transport."""
    app = create_app(settings, registry=registry)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://taskservice"
        ) as http,
    ):
        yield http


@contextlib.asynccontextmanager
async def running_worker(
    settings: Settings, registry: TaskRegistry, metrics: Metrics | None = None
) -> AsyncIterator[None]:
    """A real Procrastinate worker in this event loop, stopped gracefully on exit."""
    task = asyncio.create_task(
        run_worker(settings, registry, install_signal_handlers=False, metrics=metrics)
    )
    await asyncio.sleep(0.3)  # let it register and LISTEN before the test defers
    if task.done():
        task.result()
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def worker(settings: Settings, registry: TaskRegistry) -> AsyncIterator[None]:
    async with running_worker(settings, registry):
        yield
