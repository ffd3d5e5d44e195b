"""Runs `taskservice api|worker|up` as real processes against a given database."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.live_service import free_port


@dataclass
class ServiceProcess:
    process: subprocess.Popen[bytes]
    log: Path
    base: str | None = None  # the HTTP address, for api and up

    def alive(self) -> bool:
        return self.process.poll() is None

    def last_line(self) -> str:
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""


def service_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSERVICE_")}
    env.pop("DATABASE_URL", None)
    env.update(
        DATABASE_URL=database_url,
        TASKSERVICE_TASK_MODULES="tests.task_types",
        TASKSERVICE_MIGRATE_ON_START="false",
        TASKSERVICE_POLL_INTERVAL="0.2",
        TASKSERVICE_LOG_FORMAT="text",
        TASKSERVICE_METRICS_PORT=str(free_port()),
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def service_process(
    command: str, env: dict[str, str], log_dir: Path, *args: str
) -> Iterator[ServiceProcess]:
    """`taskservice <command>`; for api and up, yields once /health/live answers.
    Stopped with SIGTERM at the end (killed if it lingers)."""
    port = free_port()
    http = command in ("api", "up")
    log = log_dir / f"{command}-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "taskservice",
                command,
                *(("--port", str(port)) if http else ()),
                *args,
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        service = ServiceProcess(process, log, f"http://127.0.0.1:{port}" if http else None)
        try:
            if http:
                deadline = time.monotonic() + 60
                while True:
                    assert service.alive(), log.read_text()
                    with contextlib.suppress(httpx.HTTPError):
                        if httpx.get(f"{service.base}/health/live", timeout=2).is_success:
                            break
                    assert time.monotonic() < deadline, "no answer in 60 s"
                    time.sleep(0.1)
            yield service
        finally:
            if service.alive():
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
