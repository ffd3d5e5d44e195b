"""The reporting views in sql/reporting.sql, checked against what the API reports."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from tests.helpers import submit, wait_for_status


async def _finished_tasks(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    tasks = [
        await submit(client, type="echo", params={"value": 1}),
        await submit(client, type="echo", params={"value": 2}),
        await submit(client, type="sleep", params={"seconds": 0.2}),
        await submit(
            client,
            type="fail",
            params={"message": "disk full"},
            max_attempts=2,
            backoff_seconds=0.1,
        ),
        await submit(client, type="fail", params={"message": "disk full"}, max_attempts=1),
    ]
    finished = []
    for task in tasks:
        finished.append(await wait_for_status(client, task["id"], "completed", "failed"))
    return finished


async def test_views_agree_with_the_api(
    client: httpx.AsyncClient, worker: None, db: asyncpg.Connection
) -> None:
    tasks = await _finished_tasks(client)
    pending = await submit(
        client, type="echo", params={"value": 3}, queue="later", delay_seconds=600
    )

    hourly = await db.fetch(
        "SELECT type, status, sum(tasks) AS n FROM taskservice.report_tasks_hourly "
        "GROUP BY 1, 2 ORDER BY 1, 2"
    )
    assert [tuple(r) for r in hourly] == [
        ("echo", "completed", 2),
        ("echo", "pending", 1),
        ("fail", "failed", 2),
        ("sleep", "completed", 1),
    ]

    rates = {r["type"]: r for r in await db.fetch("SELECT * FROM taskservice.report_failure_rate")}
    assert (rates["fail"]["failed"], float(rates["fail"]["failure_rate"])) == (2, 1.0)
    assert (rates["echo"]["completed"], float(rates["echo"]["failure_rate"])) == (2, 0.0)

    durations = {
        r["type"]: r for r in await db.fetch("SELECT * FROM taskservice.report_duration_by_type")
    }
    [sleep] = [t for t in tasks if t["type"] == "sleep"]
    api_seconds = _ts(sleep["finished_at"]) - _ts(sleep["started_at"])
    assert durations["sleep"]["completed"] == 1
    assert durations["sleep"]["max_seconds"] == pytest.approx(api_seconds, abs=1e-3)
    assert durations["sleep"]["p50_seconds"] >= 0.2

    errors = await db.fetch("SELECT * FROM taskservice.report_top_errors")
    [error] = errors
    api_runs = sum(len(t["attempt_history"]) for t in tasks if t["type"] == "fail")
    assert (error["type"], error["error_type"], error["message"], error["runs"]) == (
        "fail",
        "IntentionalFailure",
        "disk full",
        api_runs,
    )
    assert api_runs == 3

    lag = {r["queue"]: r for r in await db.fetch("SELECT * FROM taskservice.report_queue_lag")}
    assert lag["later"]["due_pending"] == 0  # not due for ten minutes
    assert lag["default"]["avg_start_lag_seconds_last_hour"] >= 0
    queues = {q["queue"]: q for q in (await client.get("/queues")).json()}
    assert queues["later"]["pending"] == 1
    assert pending["queue"] == "later"


def _ts(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value).timestamp()
