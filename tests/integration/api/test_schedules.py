"""/scheduler/jobs: create, read, change, pause, resume, run now, delete; and bad input."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import datetime
from typing import Any

import asyncpg
import httpx

from tests.helpers import submit, wait_for_status

SCHEDULE = {"name": "hourly-echo", "type": "echo", "params": {"value": 7}, "cron": "0 * * * *"}


async def _create(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    response = await client.post("/scheduler/jobs", json={**SCHEDULE, **overrides})
    assert response.status_code == 201, response.text
    schedule: dict[str, Any] = response.json()
    return schedule


async def test_create_read_change_and_delete(client: httpx.AsyncClient) -> None:
    created = await _create(client, timezone="Europe/Paris", priority=3)
    assert created["source"] == "api"
    assert created["enabled"] is True
    next_run = datetime.fromisoformat(created["next_run_at"])
    assert next_run.minute == 0
    assert next_run.second == 0
    assert created["last_run_at"] is None
    assert created["completed_runs"] == created["failed_runs"] == 0

    assert (await client.get(f"/scheduler/jobs/{created['id']}")).json() == created

    changed = await client.patch(
        f"/scheduler/jobs/{created['id']}", json={"interval_seconds": 90, "params": {"value": 8}}
    )
    assert changed.status_code == 200
    body = changed.json()
    assert (body["cron"], body["interval_seconds"], body["params"]) == (None, 90, {"value": 8})

    assert (await client.delete(f"/scheduler/jobs/{created['id']}")).status_code == 204
    assert (await client.get(f"/scheduler/jobs/{created['id']}")).status_code == 404


async def test_pause_resume_and_run_now(client: httpx.AsyncClient, worker: None) -> None:
    created = await _create(client)
    paused = (await client.post(f"/scheduler/jobs/{created['id']}/pause")).json()
    assert paused["enabled"] is False
    run = await client.post(f"/scheduler/jobs/{created['id']}/run")
    assert run.status_code == 201
    done = await wait_for_status(client, run.json()["id"], "completed")
    assert done["result"] == 7
    after = (await client.get(f"/scheduler/jobs/{created['id']}")).json()
    assert after["last_task_id"] == done["id"]
    assert after["last_task_status"] == "completed"
    assert after["completed_runs"] == 1
    resumed = (await client.post(f"/scheduler/jobs/{created['id']}/resume")).json()
    assert resumed["enabled"] is True


async def test_bad_schedules_are_422_naming_the_field(client: httpx.AsyncClient) -> None:
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"cron": "61 * * * *"}, ["body", "cron"]),
        ({"cron": "every day"}, ["body", "cron"]),
        ({"timezone": "Mars/Olympus"}, ["body", "timezone"]),
        ({"interval_seconds": 0.5, "cron": None}, ["body", "interval_seconds"]),
        ({"interval_seconds": 60}, ["body"]),
        ({"type": "nope"}, ["body", "type"]),
        ({"params": {"value": 1, "extra": 2}}, ["body", "params", "extra"]),
        ({"name": "taskservice.mine"}, ["body", "name"]),
        ({"catch_up": "sometimes"}, ["body", "catch_up"]),
    ]
    for overrides, loc in cases:
        response = await client.post("/scheduler/jobs", json={**SCHEDULE, **overrides})
        assert response.status_code == 422, (overrides, response.text)
        assert response.json()["detail"][0]["loc"][: len(loc)] == loc, (overrides, response.text)


async def test_duplicate_name_is_409(client: httpx.AsyncClient) -> None:
    await _create(client)
    response = await client.post("/scheduler/jobs", json=SCHEDULE)
    assert response.status_code == 409
    assert response.json()["detail"][0]["loc"] == ["body", "name"]


async def test_unknown_schedule_is_404(client: httpx.AsyncClient) -> None:
    for method, path in (
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("POST", "/pause"),
        ("POST", "/run"),
    ):
        response = await client.request(method, f"/scheduler/jobs/9999{path}", json={})
        assert response.status_code == 404, (method, path)
        assert response.json()["detail"][0]["loc"] == ["path", "schedule_id"]


async def test_builtin_cleanup_is_listed_read_only_and_pausable(client: httpx.AsyncClient) -> None:
    schedules = (await client.get("/scheduler/jobs")).json()["schedules"]
    [cleanup] = [s for s in schedules if s["name"] == "taskservice.cleanup"]
    assert cleanup["source"] == "code"
    assert cleanup["params"]["older_than_days"] == 7
    path = f"/scheduler/jobs/{cleanup['id']}"
    assert (await client.patch(path, json={"cron": "* * * * *"})).status_code == 409
    assert (await client.delete(path)).status_code == 409
    assert (await client.post(f"{path}/pause")).json()["enabled"] is False


async def test_include_one_off_lists_future_single_tasks(client: httpx.AsyncClient) -> None:
    later = await submit(client, type="echo", params={"value": 1}, delay_seconds=3600)
    await submit(client, type="echo", params={"value": 2})  # due now: not listed
    plain = (await client.get("/scheduler/jobs")).json()
    assert plain["one_off"] is None
    listed = (await client.get("/scheduler/jobs", params={"include": "one_off"})).json()
    assert [t["id"] for t in listed["one_off"]] == [later["id"]]
    bad = await client.get("/scheduler/jobs", params={"include": "everything"})
    assert bad.status_code == 422


async def test_runs_show_up_in_sql_and_the_procrastinate_cli(
    client: httpx.AsyncClient, database_url: str
) -> None:
    created = await _create(client)
    task = (await client.post(f"/scheduler/jobs/{created['id']}/run")).json()
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT s.name, r.job_id FROM taskservice.schedules s "
            "JOIN taskservice.schedule_runs r ON r.schedule_id = s.id WHERE s.id = $1",
            created["id"],
        )
    finally:
        await conn.close()
    assert row is not None
    assert dict(row) == {"name": "hourly-echo", "job_id": task["id"]}
    env = {**os.environ, "DATABASE_URL": database_url}
    shown = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "procrastinate",
            "--app=taskservice.procrastinate_app.app",
            "shell",
            "list_jobs",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert f"#{task['id']} echo on default - [todo]" in shown.stdout
