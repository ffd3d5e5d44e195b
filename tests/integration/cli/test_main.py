"""The `taskservice` command as a user runs it: real processes, real ports."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg

from tests.processes import free_port, service_env, service_process


def _http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(extra)
    return env


@contextlib.contextmanager
def _service(data_dir: Path, stop: signal.Signals = signal.SIGINT) -> Iterator[str]:
    """`taskservice up` on the embedded PostgreSQL (no DATABASE_URL)."""
    env = service_env(None, data_dir=data_dir, migrate_on_start=True)
    with service_process("up", env, data_dir.parent, "--concurrency", "2", stop=stop) as up:
        yield up.base


def _embedded_servers(pgdata: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] == "postgres" and str(pgdata) in (process.info["cmdline"] or []):
            found.append(process)
    return found


def _assert_stopped(pgdata: Path) -> None:
    deadline = time.monotonic() + 15
    while _embedded_servers(pgdata):
        assert time.monotonic() < deadline, "the embedded PostgreSQL is still running"
        time.sleep(0.2)


def _wait_completed(base: str, task_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        status, task = _http("GET", f"{base}/tasks/{task_id}")
        assert status == 200
        if task["status"] == "completed":
            return dict(task)
        assert time.monotonic() < deadline, task
        time.sleep(0.05)


def test_up_without_database_url_uses_embedded_postgres_that_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    pgdata = data_dir / "pgdata"
    with _service(data_dir) as base:
        status, task = _http("POST", f"{base}/tasks", {"type": "echo", "params": {"value": 42}})
        assert status == 201
        assert _wait_completed(base, task["id"])["result"] == 42
        assert _embedded_servers(pgdata)
    assert (pgdata / "PG_VERSION").is_file()
    _assert_stopped(pgdata)  # Ctrl-C stops it

    # A user of the server that died without cleaning up does not keep it alive.
    (pgdata / ".handle_pids.json").write_text(json.dumps([_dead_pid()]))
    with _service(data_dir, stop=signal.SIGTERM) as base:
        status, again = _http("GET", f"{base}/tasks/{task['id']}")
        assert status == 200
        assert again["result"] == 42
    _assert_stopped(pgdata)  # and so does SIGTERM


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _taskservice(command: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskservice", command],
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_migrate_against_unreachable_database_fails_with_a_message() -> None:
    result = _taskservice(
        "migrate", DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/nope"
    )
    assert result.returncode == 1
    assert "cannot reach the database" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_task_module_fails_with_a_message(database_url: str) -> None:
    result = _taskservice(
        "worker", DATABASE_URL=database_url, TASKSERVICE_TASK_MODULES="no_such_module"
    )
    assert result.returncode == 2
    assert "cannot import task module 'no_such_module'" in result.stderr


def test_up_honours_migrate_on_start(database_url: str, tmp_path: Path) -> None:
    """With TASKSERVICE_MIGRATE_ON_START=false `up` does not migrate: it starts even
    while another `migrate` holds the migration lock."""
    from taskservice.store.migrate import _ADVISORY_LOCK_KEY  # the lock migrate takes first

    with psycopg.connect(database_url, autocommit=True) as other_migrate:
        other_migrate.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK_KEY,))
        env = service_env(database_url, data_dir=tmp_path / "data", migrate_on_start=False)
        with service_process("up", env, tmp_path, "--concurrency", "1", stop=signal.SIGINT) as up:
            status, health = _http("GET", f"{up.base}/health/ready")
    assert status == 200, health


def test_migrate_behind_a_held_lock_fails_with_a_message(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as analyst:
        # New views to apply, and an analyst's open transaction that read them.
        analyst.execute("DELETE FROM taskservice.schema_migrations WHERE name LIKE 'views-%'")
        analyst.execute("BEGIN")
        analyst.execute("SELECT count(*) FROM taskservice.tasks")
        result = _taskservice(
            "migrate",
            DATABASE_URL=database_url,
            TASKSERVICE_MIGRATE_LOCK_TIMEOUT_SECONDS="0.2",
            TASKSERVICE_MIGRATE_LOCK_WAIT_SECONDS="1",
        )
        pid = analyst.info.backend_pid
    assert result.returncode == 2, result.stderr
    assert "the views could not take its lock" in result.stderr
    assert f"pid {pid}" in result.stderr
    assert "Traceback" not in result.stderr
