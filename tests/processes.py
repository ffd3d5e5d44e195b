"""`taskservice up`, `api` and `worker` as real processes, as deployed: one way to
build their environment, start them, wait until they serve, and stop them."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

ROOT = Path(__file__).resolve().parents[1]

Command = Literal["up", "api", "worker"]

# Heartbeats every 0.5 s, a worker silent for 2 s is lost, the rescue runs every second.
FAST_RESCUE: dict[str, Any] = {
    "worker_heartbeat_seconds": 0.5,
    "stalled_after_seconds": 2.0,
    "rescue_interval_seconds": 1,
}

_log_numbers = itertools.count(1)


def free_port() -> int:
    """A loopback TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_env(database_url: str | None, **settings: Any) -> dict[str, str]:
    """The environment of a service process: this one's, less its TASKSERVICE_*
    variables and DATABASE_URL (a developer's own must not leak into a test), then
    `database_url` (None: `up` runs its embedded PostgreSQL), the test task types,
    no migration on start, 0.2 s polling, text logs, a metrics port of its own, and
    last `settings` (Settings field names) as TASKSERVICE_* variables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TASKSERVICE_") and k != "DATABASE_URL"
    }
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    env.update(
        TASKSERVICE_TASK_MODULES="tests.task_types",
        TASKSERVICE_MIGRATE_ON_START="false",
        TASKSERVICE_POLL_INTERVAL="0.2",
        TASKSERVICE_LOG_FORMAT="text",
        TASKSERVICE_METRICS_PORT=str(free_port()),
    )
    env.update({f"TASKSERVICE_{name.upper()}": str(value) for name, value in settings.items()})
    return env


@dataclass
class ServiceProcess:
    """A running `taskservice` command, its log file, and its port for `up` and `api`."""

    command: Command
    process: subprocess.Popen[bytes]
    log: Path
    port: int | None

    @property
    def base(self) -> str:
        """The HTTP address of `up` or `api`."""
        assert self.port is not None, f"`taskservice {self.command}` serves no HTTP"
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def last_line(self) -> str:
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

    def wait_ready(self, within: float) -> None:
        """Until /health/ready answers 200: the database reachable, the schema
        current and, for `up`, its worker connected."""
        deadline = time.monotonic() + within
        while True:
            assert self.alive(), f"exited with {self.process.returncode}:\n{self.log.read_text()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/health/ready", timeout=5).status_code == 200:
                    return
            assert time.monotonic() < deadline, f"not ready within {within:g} s: {self.last_line()}"
            time.sleep(0.2)

    def stop(self, how: signal.Signals, within: float) -> None:
        """Signal it with `how` unless it has exited; kill it if it lingers past
        `within` seconds, and fail: a service must stop when told to."""
        if not self.alive():
            return
        self.process.send_signal(how)
        try:
            self.process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise


@contextlib.contextmanager
def service_process(
    command: Command,
    env: dict[str, str],
    log_dir: Path,
    *args: str,
    ready_within: float = 90,
    stop: signal.Signals = signal.SIGTERM,
    stop_within: float = 30,
) -> Iterator[ServiceProcess]:
    """`taskservice <command> <args>` with `env`, its output in
    `log_dir`/<command>-<n>.log. `up` and `api` listen on a free loopback port and
    are yielded once ready (within `ready_within` s); a worker at once. On exit it
    gets `stop` (SIGINT is Ctrl-C) and is killed, failing the test, if still
    running `stop_within` s later."""
    port = free_port() if command in ("up", "api") else None
    log = log_dir / f"{command}-{next(_log_numbers)}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "taskservice",
                command,
                *(("--port", str(port)) if port is not None else ()),
                *args,
            ],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        service = ServiceProcess(command, process, log, port)
        try:
            if port is not None:
                service.wait_ready(ready_within)
            yield service
        finally:
            service.stop(stop, stop_within)


def worker_process(
    database_url: str, log_dir: Path, *, concurrency: int = 2, **settings: Any
) -> contextlib.AbstractContextManager[ServiceProcess]:
    """`taskservice worker --concurrency <concurrency>` on `database_url`, with a
    5 s shutdown grace unless `settings` says otherwise."""
    env = service_env(database_url, **{"shutdown_grace_seconds": 5.0, **settings})
    return service_process("worker", env, log_dir, "--concurrency", str(concurrency))
