"""/metrics: counters move as tasks run; queue depth is read from PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from taskservice.api.app import create_app
from taskservice.metrics import Metrics
from taskservice.registry import TaskRegistry
from taskservice.settings import Settings
from tests.conftest import running_worker
from tests.helpers import submit, wait_for_status


@pytest.fixture
async def shared() -> Metrics:
    return Metrics()


@pytest.fixture
async def up_client(
    settings: Settings, registry: TaskRegistry, shared: Metrics
) -> AsyncIterator[httpx.AsyncClient]:
    """API and worker sharing one set of metrics, as `taskservice up` runs them."""
    app = create_app(settings, registry=registry, metrics=shared)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        yield http


def value(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return 0.0


async def test_counters_move_as_tasks_run(
    up_client: httpx.AsyncClient, settings: Settings, registry: TaskRegistry, shared: Metrics
) -> None:
    async with running_worker(settings, registry, metrics=shared):
        ok = await submit(up_client, type="echo", params={"value": 1})
        bad = await submit(up_client, type="fail", params={}, max_attempts=2, backoff_seconds=0.1)
        await wait_for_status(up_client, ok["id"], "completed")
        await wait_for_status(up_client, bad["id"], "failed")
        waiting = await submit(up_client, type="echo", params={"value": 2}, delay_seconds=600)
        await up_client.delete(f"/tasks/{waiting['id']}")
        text = (await up_client.get("/metrics")).text
    echo = {"type": "echo", "queue": "default"}
    fail = {"type": "fail", "queue": "default"}
    assert value(text, "taskservice_tasks_submitted_total", **echo) == 2
    assert value(text, "taskservice_tasks_started_total", **echo) == 1
    assert value(text, "taskservice_tasks_completed_total", **echo) == 1
    assert value(text, "taskservice_tasks_cancelled_total", **echo) == 1
    assert value(text, "taskservice_tasks_started_total", **fail) == 2
    assert value(text, "taskservice_tasks_retried_total", **fail) == 1
    assert value(text, "taskservice_tasks_failed_total", **fail) == 1
    assert value(text, "taskservice_task_duration_seconds_count", **echo) == 1
    assert value(text, "taskservice_task_start_latency_seconds_count", **echo) == 1
    assert (
        value(text, "taskservice_http_requests_total", method="POST", route="/tasks", status="201")
        == 3
    )
    assert "taskservice.dispatch_schedules" not in text  # the service's own jobs stay out


async def test_queue_depth_is_read_on_scrape(up_client: httpx.AsyncClient) -> None:
    for _ in range(3):
        await submit(up_client, type="echo", params={"value": 1}, queue="mail")
    text = (await up_client.get("/metrics")).text
    assert value(text, "taskservice_queue_tasks", queue="mail", status="pending") == 3
    assert value(text, "taskservice_queue_oldest_pending_seconds", queue="mail") > 0


async def test_oldest_pending_counts_from_when_a_task_became_due(
    up_client: httpx.AsyncClient, database_url: str
) -> None:
    import asyncpg

    late = await submit(up_client, type="echo", params={"value": 1}, queue="late", delay_seconds=60)
    conn = await asyncpg.connect(database_url)
    try:  # it became due 30 s ago, and was created 90 s ago
        await conn.execute(
            "UPDATE procrastinate_jobs SET scheduled_at = now() - interval '30 seconds' "
            "WHERE id = $1",
            late["id"],
        )
        await conn.execute(
            "UPDATE taskservice.task_records SET created_at = now() - interval '90 seconds' "
            "WHERE job_id = $1",
            late["id"],
        )
    finally:
        await conn.close()
    await submit(up_client, type="echo", params={"value": 2}, queue="late")  # due now
    text = (await up_client.get("/metrics")).text
    assert 29 < value(text, "taskservice_queue_oldest_pending_seconds", queue="late") < 40


def _samples(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _queue_labels(text: str) -> set[str]:
    return set(re.findall(r'queue="([^"]*)"', text))


async def test_client_chosen_queue_names_do_not_grow_the_series(
    up_client: httpx.AsyncClient,
) -> None:
    """Every label value is a series kept for the life of the process: 1,000 queue
    names from clients must not make 1,000 of each."""
    for n in range(1000):
        await submit(up_client, type="echo", params={"value": n}, queue=f"q{n}")
    text = (await up_client.get("/metrics")).text
    labels = _queue_labels(text)
    # default and taskservice are always known; 50 first-seen names; the rest: other.
    assert len(labels) <= 50 + 1 + 1
    assert "other" in labels
    assert len(_samples(text)) < 400
    # Nothing is lost in the bucket: the counts still add up.
    assert (
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in _samples(text)
            if line.startswith("taskservice_tasks_submitted_total{")
        )
        == 1000
    )
    assert (
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in _samples(text)
            if line.startswith("taskservice_queue_tasks{") and 'status="pending"' in line
        )
        == 1000
    )


async def test_configured_queues_keep_their_label_past_the_bound(
    settings: Settings, registry: TaskRegistry
) -> None:
    metrics = Metrics.from_settings(
        settings.model_copy(update={"metrics_queues": ["mail"], "metrics_max_queues": 2})
    )
    assert [metrics.queue_label(q) for q in ("a", "b", "c", "mail", "default", "a")] == [
        "a",
        "b",
        "other",
        "mail",
        "default",
        "a",
    ]


async def test_worker_counts_runs_in_bounded_queue_labels(
    settings: Settings, registry: TaskRegistry, up_client: httpx.AsyncClient
) -> None:
    metrics = Metrics(max_queues=5)
    async with running_worker(settings, registry, metrics=metrics):
        tasks = [
            await submit(up_client, type="echo", params={"value": n}, queue=f"w{n}")
            for n in range(40)
        ]
        for task in tasks:
            await wait_for_status(up_client, task["id"], "completed")
    text = metrics.render().decode()
    assert _queue_labels(text) <= {"w0", "w1", "w2", "w3", "w4", "other", "default", "taskservice"}
    assert value(text, "taskservice_tasks_completed_total", type="echo", queue="other") == 35


async def test_unknown_http_methods_share_one_label(up_client: httpx.AsyncClient) -> None:
    for n in range(30):
        await up_client.request(f"M{n}", "/tasks")
    text = (await up_client.get("/metrics")).text
    methods = set(re.findall(r'method="([^"]*)"', text))
    assert methods <= {"GET", "POST", "other"}
