"""The real app over real HTTP in this event loop (uvicorn on loopback), a worker
as a separate process, and a Server-Sent Events reader: for streaming tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from tests.live_service import free_port


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """`app` (lifespan and all) on a free loopback port; yields its base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=free_port(),
        log_level="warning",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        await task


@contextlib.contextmanager
def worker_process(
    database_url: str, log_dir: Path, **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`taskservice worker` as a process of its own, stopped with SIGINT."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TASKSERVICE_")}
    environ.update(
        DATABASE_URL=database_url,
        TASKSERVICE_MIGRATE_ON_START="false",
        TASKSERVICE_POLL_INTERVAL="0.2",
        TASKSERVICE_METRICS_PORT=str(free_port()),
        **env,
    )
    log = (log_dir / "worker.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "taskservice", "worker"], env=environ, stdout=log, stderr=log
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


@dataclass
class ServerSentEvent:
    event: str
    data: Any
    id: str | None = None


async def read_events(response: httpx.Response) -> AsyncIterator[ServerSentEvent]:
    """The events of a text/event-stream response, as they arrive (comments skipped)."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in fields:
                yield ServerSentEvent(
                    fields.get("event", "message"), json.loads(fields["data"]), fields.get("id")
                )
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
