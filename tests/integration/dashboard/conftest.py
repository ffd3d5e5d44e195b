"""Fixtures of the browser tests: headless Chromium (Debian's package, driven by
Playwright), and `taskservice up` on its own database for a module's tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import janitor
from tests.pg import Server
from tests.processes import service_env, service_process

CHROMIUM = Path("/usr/bin/chromium")
# Debian's Chromium as it is: never `playwright install` (no downloaded browser).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# Where the screenshots go (ignored by git): README's Dashboard section shows them.
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

T = TypeVar("T")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to its end in a thread of its own: this thread's event loop
    belongs to Playwright while a browser is open."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = asyncio.run(coroutine)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value


@pytest.fixture(scope="module")
def browser(template_db: str) -> Iterator[Browser]:
    """Chromium for one module. Playwright's sync API keeps an event loop running
    in this thread while it is open, so asyncio.run fails meanwhile: the browser
    is closed at the module's end (async tests elsewhere run after), and starts
    after the migrated template (made with asyncio.run) exists."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)"
        # CI sets this, so a missing browser fails there instead of skipping.
        if os.environ.get("TASKSERVICE_TEST_BROWSER") == "required":
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab (its own session storage); a script error on the page fails the test."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, errors


@contextlib.contextmanager
def dashboard_service(database_url: str, tmp: Path, *args: str) -> Iterator[str]:
    """`taskservice up` on `database_url`, stopped as Ctrl-C does; yields its base URL."""
    # Tests leave long tasks running: stopping must not wait for them.
    env = service_env(database_url, data_dir=tmp / "data", shutdown_grace_seconds=1)
    with service_process("up", env, tmp, *args, stop=signal.SIGINT) as up:
        yield up.base


@pytest.fixture(scope="module")
def open_service(
    pg_server: Server, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`taskservice up` on loopback with no API key (open mode), shared by a module."""
    tmp = tmp_path_factory.mktemp("dashboard")
    name = f"taskservice_dashboard_{os.getpid()}"
    with (
        janitor(pg_server, name, template_dbname=template_db),
        dashboard_service(pg_server.url(name), tmp, "--concurrency", "4") as base,
    ):
        yield base
