"""FastAPI dependencies: what a route needs from the app's state.

Each is `async def` although it never awaits: FastAPI runs a plain `def`
dependency in a worker thread, a hand-off that cost more per request than
the route's own work (py-spy, issue 10)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from taskservice.metrics import Metrics
from taskservice.registry import TaskRegistry
from taskservice.services.health import WorkerProbe
from taskservice.services.submissions import GroupSubmitter
from taskservice.settings import Settings
from taskservice.store import asyncpg_driver as db
from taskservice.store.listener import EventListener


@dataclass(frozen=True)
class Resources:
    """What the busiest routes (POST /tasks, GET /tasks/{id}) need, as one
    dependency: FastAPI's work per dependency is paid on every request."""

    pool: db.Pool
    listener: EventListener
    registry: TaskRegistry
    settings: Settings
    metrics: Metrics
    submitter: GroupSubmitter


async def _resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


async def _pool(request: Request) -> db.Pool:
    pool: db.Pool = request.app.state.pool
    return pool


async def _listener(request: Request) -> EventListener:
    listener: EventListener = request.app.state.listener
    return listener


async def _registry(request: Request) -> TaskRegistry:
    registry: TaskRegistry = request.app.state.registry
    return registry


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def _worker(request: Request) -> WorkerProbe | None:
    worker: WorkerProbe | None = request.app.state.worker
    return worker


ResourcesDep = Annotated[Resources, Depends(_resources)]
ListenerDep = Annotated[EventListener, Depends(_listener)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
PoolDep = Annotated[db.Pool, Depends(_pool)]
RegistryDep = Annotated[TaskRegistry, Depends(_registry)]
SettingsDep = Annotated[Settings, Depends(_settings)]
# The in-process worker of `taskservice up`; None for a standalone API.
WorkerDep = Annotated[WorkerProbe | None, Depends(_worker)]
