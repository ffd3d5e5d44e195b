"""The dashboard with API keys: it asks for one, keeps it in the tab's session
storage only, sends it as a Bearer token (to the event stream too), and shows a
read-only key no action buttons."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, Route, expect

from taskservice.models.keys import Scope
from taskservice.models.tasks import TaskCreate
from taskservice.registry import load_registry
from taskservice.services import keys as key_service
from taskservice.services import tasks as task_service
from taskservice.store import asyncpg_driver as db
from tests.integration.dashboard.conftest import dashboard_service, run_async

pytestmark = pytest.mark.browser


async def _prepare(database_url: str) -> dict[str, Any]:
    """A read-only key, and tasks it owns (as if submitted under it): one failed,
    one running, one waiting an hour."""
    pool = await db.create_pool(database_url, max_size=1)
    try:
        _, read_key = await key_service.create_key(pool=pool, name="viewer", scopes=[Scope.READ])
        row = await db.fetchrow(pool, "find_api_key", prefix=read_key.split("_")[1])
        assert row is not None
        registry = load_registry([])
        tasks = {}
        for name, body in {
            "failed": {"type": "fail", "params": {}, "max_attempts": 1},
            "running": {"type": "sleep", "params": {"seconds": 60}},
            "later": {"type": "sleep", "params": {"seconds": 1}, "delay_seconds": 3600},
        }.items():
            task, _ = await task_service.submit_task(
                pool=pool,
                registry=registry,
                request=TaskCreate.model_validate(body),
                owner=row["id"],
            )
            tasks[name] = task.id
        return {"read_key": read_key, **tasks}
    finally:
        await pool.close()


@pytest.fixture
def keyed_service(database_url: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """`taskservice up` on a database that has a key (so no open mode)."""
    prepared = run_async(_prepare(database_url))
    with dashboard_service(database_url, tmp_path) as base:
        yield base, prepared


def _status(base: str, key: str, task_id: int) -> str:
    response = httpx.get(
        f"{base}/tasks/{task_id}", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


def _wait_status(base: str, key: str, task_id: int, status: str) -> None:
    deadline = time.monotonic() + 20
    while _status(base, key, task_id) != status:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_read_only_key_sees_everything_and_no_action_button(
    page: Page, keyed_service: tuple[str, dict[str, Any]]
) -> None:
    base, prepared = keyed_service
    key = prepared["read_key"]
    _wait_status(base, key, prepared["failed"], "failed")
    _wait_status(base, key, prepared["running"], "in_progress")

    page.goto(f"{base}/dashboard")
    form = page.locator("#key-form")
    expect(form).to_be_visible()
    page.get_by_label("API key").fill("tsk_abcdefgh_" + "A" * 43)
    page.get_by_role("button", name="Use this key").click()
    expect(page.locator("#key-error")).to_contain_text("refused")

    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Use this key").click()
    expect(page.locator("#who")).to_have_text("Key: viewer (read)")
    expect(form).to_be_hidden()
    # In this tab's session storage only.
    assert page.evaluate("sessionStorage.getItem('taskservice.apiKey')") == key
    assert page.evaluate("localStorage.length") == 0
    assert key not in page.evaluate("document.cookie")

    expect(page.locator('tr[data-task-id="{}"] .status'.format(prepared["failed"]))).to_have_text(
        "failed"
    )
    expect(page.get_by_role("link", name="Submit")).to_be_hidden()

    page.goto(f"{base}/dashboard#/tasks/{prepared['failed']}")  # the key survives navigation
    expect(page.locator(".error-message")).to_contain_text("IntentionalFailure")
    expect(page.locator("#retry-task")).to_have_count(0)
    page.goto(f"{base}/dashboard#/tasks/{prepared['running']}")
    expect(page.locator("#task-status")).to_contain_text("in progress")
    expect(page.locator("#cancel-task")).to_have_count(0)
    page.goto(f"{base}/dashboard#/schedules")
    expect(page.locator('tr[data-schedule="taskservice.cleanup"]')).to_be_visible()
    expect(page.locator("tr[data-schedule] button")).to_have_count(0)
    page.goto(f"{base}/dashboard#/submit")
    expect(page.locator("#submit-form")).to_have_count(0)

    page.get_by_role("button", name="Forget key").click()
    expect(form).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('taskservice.apiKey')") is None


def test_the_event_stream_is_read_with_the_key_and_resumed(
    page: Page, keyed_service: tuple[str, dict[str, Any]]
) -> None:
    """The page reads GET /events with fetch (the Bearer header, which EventSource
    cannot send), applies its status events to the rows on screen and, when
    the stream ends, reconnects with Last-Event-ID. The stream is played by the
    browser here, so that the page's client is tested whatever the server has."""
    base, prepared = keyed_service
    later = prepared["later"]  # pending for an hour: any other status came from the stream
    requests: list[dict[str, str]] = []
    event = {"id": later, "status": "in_progress", "type": "sleep", "queue": "default"}
    body = (
        ": keep-alive\n\n"
        "event: open\ndata: {}\n\n"
        f"event: status\nid: 41\ndata: {json.dumps(event)}\n\n"
    )

    def play(route: Route) -> None:
        requests.append(route.request.headers)
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)

    page.route(re.compile(r".*/events(\?.*)?$"), play)
    page.goto(f"{base}/dashboard")
    page.evaluate(
        f"sessionStorage.setItem('taskservice.apiKey', {json.dumps(prepared['read_key'])})"
    )
    page.reload()
    expect(page.locator("#live")).to_have_attribute("data-mode", "stream")
    expect(page.locator(f'tr[data-task-id="{later}"] .status')).to_have_text("in progress")
    assert _status(base, prepared["read_key"], later) == "pending"

    deadline = time.monotonic() + 10
    while len(requests) < 2:  # the stream ended: the page reconnects, resuming
        assert time.monotonic() < deadline, requests
        page.wait_for_timeout(100)
    assert requests[0]["authorization"] == f"Bearer {prepared['read_key']}"
    assert "last-event-id" not in requests[0]
    assert requests[1]["last-event-id"] == "41"
