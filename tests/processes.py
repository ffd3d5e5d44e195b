"""`taskservice worker` and `taskservice api` as real processes, for rescue and fault tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.live_service import free_port

ROOT = Path(__file__).resolve().parents[1]

# Heartbeats every 0.5 s, a worker silent for 2 s is lost, the rescue runs every second.
FAST_RESCUE: dict[str, Any] = {
    "worker_heartbeat_seconds": 0.5,
    "stalled_after_seconds": 2.0,
    "rescue_interval_seconds": 1,
}


def service_env(database_url: str, **settings: Any) -> dict[str, str]:
    """The environment of a service process on `database_url`, with `settings`
    (Settings field names) as TASKSERVICE_* variables."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "TASKSERVICE_TASK_MODULES": "tests.task_types",
        "TASKSERVICE_MIGRATE_ON_START": "false",
        "TASKSERVICE_POLL_INTERVAL": "0.2",
        "TASKSERVICE_METRICS_PORT": str(free_port()),
        "TASKSERVICE_LOG_FORMAT": "text",
        **{f"TASKSERVICE_{k.upper()}": str(v) for k, v in settings.items()},
    }


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


@contextlib.contextmanager
def worker_process(
    database_url: str,
    *,
    concurrency: int = 2,
    grace: float = 5.0,
    log: Path | None = None,
    **settings: Any,
) -> Iterator[subprocess.Popen[bytes]]:
    """`taskservice worker` in its own process, as deployed, with fast rescue
    settings unless `settings` says otherwise; killed on exit if still running."""
    env = service_env(database_url, shutdown_grace_seconds=grace, **{**FAST_RESCUE, **settings})
    with contextlib.ExitStack() as stack:
        output = stack.enter_context(log.open("ab")) if log else subprocess.DEVNULL
        process = subprocess.Popen(
            [sys.executable, "-m", "taskservice", "worker", "--concurrency", str(concurrency)],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
        )
        try:
            yield process
        finally:
            _stop(process)


@contextlib.contextmanager
def api_process(database_url: str, *, log: Path | None = None, **settings: Any) -> Iterator[str]:
    """`taskservice api` in its own process on a free port; yields its base URL once
    it answers /health/live (within 30 s)."""
    port = free_port()
    env = service_env(database_url, **settings)
    with contextlib.ExitStack() as stack:
        output = stack.enter_context(log.open("ab")) if log else subprocess.DEVNULL
        process = subprocess.Popen(
            [sys.executable, "-m", "taskservice", "api", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, f"api exited with {process.returncode}"
                with (
                    contextlib.suppress(OSError, urllib.error.URLError),
                    urllib.request.urlopen(f"{base}/health/live", timeout=2) as answer,
                ):
                    if answer.status == 200:
                        break
                assert time.monotonic() < deadline, "api did not answer within 30 s"
                time.sleep(0.1)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            finally:
                _stop(process)
