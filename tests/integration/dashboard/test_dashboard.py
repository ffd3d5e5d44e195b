"""The dashboard in a real browser (headless Chromium) against `taskservice up`
in its loopback open mode: live updates, cancel, retry, the generated submit
form, filters and schedules, all through the page."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.integration.dashboard.conftest import ARTIFACTS

pytestmark = pytest.mark.browser


def _submit(base: str, **body: Any) -> dict[str, Any]:
    response = httpx.post(f"{base}/tasks", json=body, timeout=10)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def _task(base: str, task_id: int) -> dict[str, Any]:
    response = httpx.get(f"{base}/tasks/{task_id}", timeout=10)
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


def _wait_status(base: str, task_id: int, status: str, within: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while (task := _task(base, task_id))["status"] != status:
        assert time.monotonic() < deadline, f"task {task_id} still {task['status']}"
        time.sleep(0.1)
    return task


def _row_status(page: Page, task_id: int) -> Any:
    return page.locator(f'tr[data-task-id="{task_id}"] .status')


def _open(page: Page, base: str, route: str = "") -> None:
    page.goto(f"{base}/dashboard{route}")
    expect(page.locator("#who")).to_contain_text("Open mode")
    # A marker that a reload would wipe: every update below must keep it.
    page.evaluate("window.__sameDocument = true")


def _same_document(page: Page) -> bool:
    return bool(page.evaluate("window.__sameDocument === true"))


def test_a_task_reaches_completed_on_the_overview_without_a_reload(
    page: Page, open_service: str
) -> None:
    _open(page, open_service)
    expect(page.locator("#live")).to_have_attribute("data-mode", re.compile("stream|polling"))
    task = _submit(open_service, type="sleep", params={"seconds": 1})

    status = _row_status(page, task["id"])
    expect(status).to_have_text("completed", timeout=20_000)
    assert _same_document(page)

    # The aggregates (read every 15 s) include it after their next refresh.
    page.reload()
    expect(page.locator('.count[data-status="completed"] .count-value')).not_to_have_text("0")
    expect(page.locator(".workers-alive")).to_have_text("Workers alive: 1")
    completed_bars = page.locator("svg.chart rect.bar-completed:not([height='0'])")
    expect(completed_bars).to_have_count(1)
    expect(page.locator('tr[data-queue="default"]')).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "dashboard-overview.png", full_page=True)


def test_cancel_a_running_task_from_its_page(page: Page, open_service: str) -> None:
    task = _submit(open_service, type="sleep", params={"seconds": 60})
    _wait_status(open_service, task["id"], "in_progress")
    _open(page, open_service, f"#/tasks/{task['id']}")
    expect(page.locator("#task-status")).to_contain_text("in progress")

    # Going back from the confirmation changes nothing.
    page.locator("#cancel-task").click()
    expect(page.locator("#confirm")).to_be_visible()
    page.locator("#confirm-no").click()
    expect(page.locator("#confirm")).to_be_hidden()
    assert _task(open_service, task["id"])["status"] == "in_progress"

    page.locator("#cancel-task").click()
    page.locator("#confirm-yes").click()
    expect(page.locator("#task-status")).to_contain_text("cancelled", timeout=20_000)
    assert _task(open_service, task["id"])["status"] == "cancelled"
    expect(page.locator("#cancel-task")).to_have_count(0)  # nothing left to cancel
    assert _same_document(page)


def test_retry_a_failed_task_from_its_page(page: Page, open_service: str) -> None:
    task = _submit(open_service, type="fail", params={"message": "disk full"}, max_attempts=1)
    _wait_status(open_service, task["id"], "failed")
    _open(page, open_service, f"#/tasks/{task['id']}")
    expect(page.locator(".error-message")).to_have_text("IntentionalFailure: disk full")
    expect(page.locator(".traceback")).to_contain_text("Traceback (most recent call last)")
    expect(page.locator("#cancel-task")).to_have_count(0)

    page.locator("#retry-task").click()
    expect(page.locator("#confirm-title")).to_have_text(f"Retry task #{task['id']}?")
    page.locator("#confirm-yes").click()
    # It runs again (and fails again): a second attempt appears, without a reload.
    expect(page.locator('tr[data-attempt="2"]')).to_contain_text("failed", timeout=20_000)
    expect(page.locator("#task-status")).to_contain_text("failed")
    assert _same_document(page)
    assert _task(open_service, task["id"])["attempts"] == 2
    page.screenshot(path=ARTIFACTS / "dashboard-task-detail.png", full_page=True)


def test_submit_from_the_form_generated_from_the_types_schema(
    page: Page, open_service: str
) -> None:
    _open(page, open_service, "#/submit?type=sleep")
    seconds = page.get_by_label("Seconds (required)")
    expect(seconds).to_have_attribute("type", "number")

    # The service's own check comes back to the field it is about.
    seconds.fill("-1")
    page.get_by_role("button", name="Submit sleep task").click()
    expect(page.locator("#submit-error")).to_contain_text("greater than or equal to 0")
    expect(seconds).to_have_attribute("aria-invalid", "true")

    seconds.fill("0.2")
    page.get_by_role("button", name="Submit sleep task").click()
    expect(page).to_have_url(re.compile(r"#/tasks/\d+$"))
    task_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator("#task-status")).to_contain_text("completed", timeout=20_000)
    expect(page.locator("#task-result")).to_contain_text('"slept": 0.2')
    assert _task(open_service, task_id)["params"] == {"seconds": 0.2}

    # A param with no simple control (echo's `value`: any JSON) takes JSON.
    page.goto(f"{open_service}/dashboard#/submit?type=echo")
    page.get_by_label("Value (required) (JSON)").fill('{"a": [1, 2]}')
    page.get_by_role("button", name="Submit echo task").click()
    expect(page.locator("#task-status")).to_contain_text("completed", timeout=20_000)
    task_id = int(page.url.rsplit("/", 1)[1])
    assert _task(open_service, task_id)["result"] == {"a": [1, 2]}


def test_filter_the_task_list(page: Page, open_service: str) -> None:
    echo = _submit(open_service, type="echo", params={"value": 1}, queue="filters")
    failed = _submit(open_service, type="fail", params={}, max_attempts=1, queue="filters")
    other = _submit(open_service, type="fail", params={}, max_attempts=1)
    for task in (echo, failed, other):
        _wait_status(open_service, task["id"], "completed" if task is echo else "failed")
    _open(page, open_service, "#/tasks")
    expect(_row_status(page, echo["id"])).to_have_text("completed")

    page.get_by_label("Status").select_option("failed")
    page.get_by_label("Queue").fill("filters")
    page.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(re.compile(r"status=failed.*queue=filters"))
    rows = page.locator("tbody tr[data-task-id]")
    expect(rows).to_have_count(1)
    expect(_row_status(page, failed["id"])).to_have_text("failed")

    # The filters stay in the form, and Clear drops them.
    expect(page.get_by_label("Queue")).to_have_value("filters")
    page.get_by_role("link", name="Clear").click()
    expect(_row_status(page, other["id"])).to_be_visible()
    expect(_row_status(page, echo["id"])).to_be_visible()
    assert _same_document(page)


def test_pause_resume_and_run_a_schedule_now(page: Page, open_service: str) -> None:
    _open(page, open_service, "#/schedules")
    row = page.locator('tr[data-schedule="taskservice.cleanup"]')
    expect(row.locator(".schedule-state")).to_have_text("active")

    row.get_by_role("button", name="Pause").click()
    page.locator("#confirm-yes").click()
    expect(row.locator(".schedule-state")).to_have_text("paused")
    row.get_by_role("button", name="Resume").click()
    page.locator("#confirm-yes").click()
    expect(row.locator(".schedule-state")).to_have_text("active")

    row.get_by_role("button", name="Run now").click()
    page.locator("#confirm-yes").click()
    expect(page.locator(".message")).to_contain_text("deferred")
    task_id = int(re.findall(r"task #(\d+)", page.locator(".message").inner_text())[0])
    assert _task(open_service, task_id)["type"] == "taskservice.cleanup"


def test_the_page_works_at_phone_width(page: Page, open_service: str) -> None:
    page.set_viewport_size({"width": 375, "height": 800})
    _open(page, open_service, "#/queues")
    expect(page.get_by_role("heading", name="Workers", exact=True)).to_be_visible()
    # Nothing wider than the screen but the tables, which scroll inside their box.
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= 375
    # Keyboard: the skip link comes first and the nav is reachable.
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
