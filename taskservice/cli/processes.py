"""`taskservice worker --processes N`: N workers under one parent, to use more than one core."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

logger = logging.getLogger(__name__)

# How often the parent looks at its children.
POLL_SECONDS = 0.2


def child_environment(
    base: dict[str, str], *, index: int, database_url: str, metrics_port: int | None
) -> dict[str, str]:
    """What child `index` runs with: the parent's database (resolved once, so an
    embedded server is started once), no migration (the parent did it), and a
    metrics port of its own (`metrics_port + index`) when the parent has one."""
    env = {**base, "DATABASE_URL": database_url, "TASKSERVICE_MIGRATE_ON_START": "false"}
    if metrics_port is not None:
        env["TASKSERVICE_METRICS_PORT"] = str(metrics_port + index)
    return env


def run_worker_processes(
    count: int,
    worker_args: Sequence[str],
    *,
    database_url: str,
    metrics_port: int | None,
) -> int:
    """Run `count` `taskservice worker` processes (each its own worker id) with
    `worker_args`, until all have exited; returns the exit status.

    SIGTERM and SIGINT reach each child once (children have sessions of their
    own, so a Ctrl-C at a terminal is not delivered twice); each then stops
    gracefully as a lone worker would. When a child exits on its own with a
    failure, the others are stopped too and the parent fails with its status,
    so that whatever supervises the parent restarts the lot."""
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop_children(signum: int = signal.SIGTERM) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            stop_children(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    status = 0
    try:
        for index in range(count):
            env = child_environment(
                dict(os.environ),
                index=index,
                database_url=database_url,
                metrics_port=metrics_port,
            )
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "taskservice", "worker", *worker_args],
                    env=env,
                    start_new_session=True,
                )
            )
        logger.info(
            "started %d worker processes: %s", count, ", ".join(str(c.pid) for c in children)
        )
        while any(child.poll() is None for child in children):
            for child in children:
                code = child.poll()
                if code is not None and code != 0 and not stopping:
                    logger.error(
                        "worker process %s exited with status %s: stopping the others",
                        child.pid,
                        code,
                    )
                    stopping = True
                    status = code
                    stop_children()
            time.sleep(POLL_SECONDS)
        if status == 0:
            status = next((c.returncode for c in children if c.returncode not in (0, None)), 0)
    finally:
        stop_children()
        for child in children:
            child.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    # A child stopped by the signal the parent forwarded exits cleanly (0); one
    # killed by a signal has a negative status: report it as a shell would.
    return 128 - status if status < 0 else status
