"""Fixtures of the worker's integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import procrastinate
import pytest

from taskservice.registry import TaskRegistry
from taskservice.settings import Settings
from taskservice.worker.app import build_queue_app
from taskservice.worker.runs import ServiceJobManager


@pytest.fixture
async def queue_app(settings: Settings, registry: TaskRegistry) -> AsyncIterator[procrastinate.App]:
    """The service's Procrastinate App, open, for tests that act as a worker
    themselves; the heartbeat threads of workers they registered stop with it."""
    app = build_queue_app(settings, registry, pool_size=3)
    async with app.open_async():
        yield app
        assert isinstance(app.job_manager, ServiceJobManager)
        await app.job_manager.stop_heartbeats()
