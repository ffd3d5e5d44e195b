"""The same tasks through REST, SQL and the `procrastinate` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx

from tests.helpers import submit, wait_for_status

PROCRASTINATE_APP = "taskservice.procrastinate_app.app"


def _procrastinate(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TASKSERVICE_TASK_MODULES": "tests.task_types",
    }
    return subprocess.run(
        [sys.executable, "-m", "procrastinate", f"--app={PROCRASTINATE_APP}", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_job_deferred_by_procrastinate_cli_runs_and_shows_in_api(
    client: httpx.AsyncClient, worker: None, database_url: str
) -> None:
    deferred = _procrastinate(database_url, "defer", "echo", json.dumps({"value": "from cli"}))
    assert deferred.returncode == 0, deferred.stderr
    [task] = (await client.get("/tasks")).json()["items"]
    done = await wait_for_status(client, task["id"], "completed")
    assert done["result"] == "from cli"
    assert done["max_attempts"] is None  # the type's default applies


async def test_bad_args_from_cli_fail_without_retry(
    client: httpx.AsyncClient, worker: None, database_url: str
) -> None:
    deferred = _procrastinate(database_url, "defer", "sleep", json.dumps({"seconds": "x"}))
    assert deferred.returncode == 0, deferred.stderr
    [task] = (await client.get("/tasks")).json()["items"]
    failed = await wait_for_status(client, task["id"], "failed")
    assert failed["attempts"] == 1
    assert failed["error"]["type"] == "ValidationError"


async def test_api_task_is_visible_to_procrastinate_cli(
    client: httpx.AsyncClient, database_url: str
) -> None:
    task = await submit(client, type="echo", params={"value": 3})
    shown = _procrastinate(database_url, "shell", "list_jobs")
    assert shown.returncode == 0, shown.stderr
    assert f"#{task['id']} echo" in shown.stdout
    health = _procrastinate(database_url, "healthchecks")
    assert health.returncode == 0, health.stderr
    assert "Found procrastinate_jobs table: OK" in health.stdout
