"""Completion webhooks: signed, retried after a 5xx, their delivery visible on the task."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from taskservice.api.app import create_app
from taskservice.registry import TaskRegistry
from taskservice.services.callbacks import SIGNATURE_HEADER, verify
from taskservice.settings import Settings
from tests.conftest import running_worker
from tests.helpers import submit

SECRET = "test-secret"


class Receiver:
    """A webhook receiver on loopback that answers each POST with the next status."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.url = ""


@contextlib.contextmanager
def receiver(*statuses: int) -> Iterator[Receiver]:
    state = Receiver(list(statuses))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append((dict(self.headers), body))
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "callback_secret": SecretStr(SECRET),
            "callback_allowed_hosts": ["127.0.0.1"],
            "callback_backoff_seconds": 0.5,
        }
    )


@contextlib.asynccontextmanager
async def api(settings: Settings, registry: TaskRegistry) -> Any:
    app = create_app(settings, registry=registry)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        yield http


async def _until(client: httpx.AsyncClient, path: str, check: Any, within: float = 20) -> Any:
    deadline = time.monotonic() + within
    while True:
        body = (await client.get(path)).json()
        if check(body):
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.1)


async def test_a_webhook_is_signed_and_retried_after_a_500(
    hook_settings: Settings, registry: TaskRegistry
) -> None:
    async with api(hook_settings, registry) as client:
        with receiver(500, 200) as hook:
            task = await submit(client, type="echo", params={"value": 7}, callback_url=hook.url)
            async with running_worker(hook_settings, registry):
                done = await _until(
                    client,
                    f"/tasks/{task['id']}",
                    lambda t: (t["callback"] or {}).get("status") == "delivered",
                )
    assert done["callback"] == {"status": "delivered", "attempts": 2, "last_error": None}
    assert len(hook.received) == 2
    for headers, body in hook.received:
        assert verify(SECRET, body, headers[SIGNATURE_HEADER])
        assert not verify("another-secret", body, headers[SIGNATURE_HEADER])
        sent = json.loads(body)
        assert (sent["id"], sent["status"], sent["result"]) == (task["id"], "completed", 7)
    # Each attempt is the same delivery, for receivers that deduplicate.
    assert len({headers["Taskservice-Delivery"] for headers, _ in hook.received}) == 1


async def test_a_webhook_answered_4xx_is_not_retried(
    hook_settings: Settings, registry: TaskRegistry
) -> None:
    async with api(hook_settings, registry) as client:
        with receiver(410) as hook:
            task = await submit(client, type="echo", params={"value": 1}, callback_url=hook.url)
            async with running_worker(hook_settings, registry):
                done = await _until(
                    client,
                    f"/tasks/{task['id']}",
                    lambda t: (t["callback"] or {}).get("status") == "failed",
                )
                await asyncio.sleep(1.0)  # a retry would come after 0.5 s
    assert done["callback"]["attempts"] == 1
    assert "HTTP 410" in done["callback"]["last_error"]
    assert len(hook.received) == 1


async def test_a_batch_callback_fires_once_its_last_task_ends(
    hook_settings: Settings, registry: TaskRegistry
) -> None:
    async with api(hook_settings, registry) as client:
        with receiver() as hook:
            body = {
                "tasks": [{"type": "echo", "params": {"value": i}} for i in range(5)],
                "callback_url": hook.url,
            }
            created = (await client.post("/tasks/batch", json=body)).json()
            async with running_worker(hook_settings, registry):
                batch = await _until(
                    client,
                    f"/batches/{created['batch_id']}",
                    lambda b: (b["callback"] or {}).get("status") == "delivered",
                )
    assert batch["completed"] == 5
    assert len(hook.received) == 1
    headers, sent = hook.received[0]
    assert verify(SECRET, sent, headers[SIGNATURE_HEADER])
    assert json.loads(sent)["done"] is True
    assert headers["Taskservice-Event"] == "batch.finished"


async def test_callback_urls_are_checked_at_submission(
    hook_settings: Settings, settings: Settings, registry: TaskRegistry
) -> None:
    async with api(hook_settings, registry) as client:
        for url, reason in [
            ("http://example.org/hook", "not in TASKSERVICE_CALLBACK_ALLOWED_HOSTS"),
            ("ftp://127.0.0.1/hook", "http:// or https://"),
            ("http://user:pw@127.0.0.1/hook", "credentials"),
        ]:
            response = await client.post(
                "/tasks", json={"type": "echo", "params": {"value": 1}, "callback_url": url}
            )
            assert response.status_code == 422
            [error] = response.json()["detail"]
            assert error["loc"] == ["body", "callback_url"]
            assert reason in error["msg"]
        batch = {"tasks": [{"type": "echo", "params": {"value": 1}}] * 3}
        batch["tasks"] = [
            *batch["tasks"][:2],
            {**batch["tasks"][2], "callback_url": "http://x.invalid/"},
        ]
        response = await client.post("/tasks/batch", json=batch)
        assert [e["loc"] for e in response.json()["detail"]] == [
            ["body", "tasks", 2, "callback_url"]
        ]
    # A name allowed by a wildcard but resolving to loopback is refused...
    wildcard = hook_settings.model_copy(update={"callback_allowed_hosts": ["*"]})
    async with api(wildcard, registry) as client:
        response = await client.post(
            "/tasks",
            json={"type": "echo", "params": {"value": 1}, "callback_url": "http://localhost/x"},
        )
        assert response.status_code == 422
        assert "internal address" in response.json()["detail"][0]["msg"]
    # ...and without a signing key there are no callbacks at all.
    async with api(settings, registry) as client:
        response = await client.post(
            "/tasks",
            json={"type": "echo", "params": {"value": 1}, "callback_url": "http://127.0.0.1/"},
        )
        assert response.status_code == 422
        assert "TASKSERVICE_CALLBACK_SECRET" in response.json()["detail"][0]["msg"]


async def test_a_schedule_gives_its_callback_to_every_run(
    hook_settings: Settings, registry: TaskRegistry
) -> None:
    async with api(hook_settings, registry) as client:
        refused = await client.post(
            "/scheduler/jobs",
            json={
                "name": "bad",
                "type": "echo",
                "params": {"value": 1},
                "interval_seconds": 60,
                "callback_url": "http://example.org/",
            },
        )
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"] == ["body", "callback_url"]
        with receiver() as hook:
            created = await client.post(
                "/scheduler/jobs",
                json={
                    "name": "hooked",
                    "type": "echo",
                    "params": {"value": "tick"},
                    "interval_seconds": 3600,
                    "callback_url": hook.url,
                },
            )
            assert created.status_code == 201, created.text
            assert created.json()["callback_url"] == hook.url
            schedule_id = created.json()["id"]
            run = await client.post(f"/scheduler/jobs/{schedule_id}/run")
            assert run.status_code in (200, 201, 202), run.text
            async with running_worker(hook_settings, registry):
                deadline = time.monotonic() + 20
                while not hook.received:
                    assert time.monotonic() < deadline, "no webhook from the scheduled run"
                    await asyncio.sleep(0.1)
    headers, body = hook.received[0]
    assert verify(SECRET, body, headers[SIGNATURE_HEADER])
    assert json.loads(body)["result"] == "tick"
