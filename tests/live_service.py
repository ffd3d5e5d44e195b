"""Runs `taskservice up` as a real process on a free port, for end-to-end tests."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError:
        return False


@contextlib.contextmanager
def running_service(
    env: dict[str, str],
    log_dir: Path,
    *args: str,
    stop: signal.Signals = signal.SIGINT,
    command: str = "up",
) -> Iterator[str]:
    """`taskservice up` (or `command`, plus `args`) with `env`; yields its base URL
    once healthy (within 90 s), then stops it with `stop` (SIGINT, as Ctrl-C does).
    Its output goes to `log_dir`/<command>-<port>.log."""
    port = free_port()
    log_path = log_dir / f"{command}-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "taskservice", command, "--port", str(port), *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                assert process.poll() is None, log_path.read_text()
                with contextlib.suppress(OSError):
                    if _healthy(f"{base}/health/ready"):
                        break
                assert time.monotonic() < deadline, "service did not become healthy in 90 s"
                time.sleep(0.2)
            yield base
        finally:
            process.send_signal(stop)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
                raise
