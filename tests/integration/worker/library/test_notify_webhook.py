"""notify.webhook against a real HTTP server on loopback: signed as completion
webhooks are, retried the same way, refused without a signing key."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from taskservice.registry import TaskRegistry
from taskservice.services.callbacks import SIGNATURE_HEADER, verify
from taskservice.settings import Settings
from tests.conftest import running_worker
from tests.helpers import submit, wait_for_status
from tests.integration.worker.library.conftest import Answer, Server, api, refusal

KEY = "webhook-key"


@pytest.fixture
def hook_settings(library_settings: Settings) -> Settings:
    return library_settings.model_copy(update={"callback_secret": SecretStr(KEY)})


async def test_a_payload_is_posted_signed_and_retried_after_a_5xx(
    web: Server, hook_settings: Settings, registry: TaskRegistry
) -> None:
    url = web.script(
        "/hook", Answer(503), Answer(200, b'{"seen": true}', {"Content-Type": "application/json"})
    )
    payload = {"order": 42, "state": "shipped", "note": "été"}
    async with api(hook_settings, registry) as client:
        task = await submit(
            client,
            type="notify.webhook",
            params={"url": url, "payload": payload, "headers": {"X-Tenant": "acme"}},
            backoff_seconds=0.1,
        )
        async with running_worker(hook_settings, registry):
            done = await wait_for_status(client, task["id"], "completed", "failed", within=20)
    assert done["status"] == "completed", done["error"]
    assert done["attempts"] == 2
    assert done["result"]["status"] == 200
    assert done["result"]["body"] == {"seen": True}
    first, second = web.to("/hook")
    for sent in (first, second):
        assert sent.method == "POST"
        assert json.loads(sent.body) == payload
        assert sent.headers["content-type"] == "application/json"
        assert sent.headers["x-tenant"] == "acme"
        assert sent.headers["taskservice-event"] == "notify"
        assert verify(KEY, sent.body, sent.headers[SIGNATURE_HEADER.lower()])
        assert not verify("another-key", sent.body, sent.headers[SIGNATURE_HEADER.lower()])
    # One delivery id for every attempt, for receivers that deduplicate.
    assert first.headers["taskservice-delivery"] == second.headers["taskservice-delivery"]


async def test_a_4xx_is_not_retried(
    web: Server, hook_settings: Settings, registry: TaskRegistry
) -> None:
    url = web.script("/gone", Answer(410, b"gone"))
    async with api(hook_settings, registry) as client:
        task = await submit(
            client, type="notify.webhook", params={"url": url, "payload": 1}, backoff_seconds=0.1
        )
        async with running_worker(hook_settings, registry):
            done = await wait_for_status(client, task["id"], "failed", within=20)
    assert done["attempts"] == 1
    assert done["error"]["details"]["response"]["status"] == 410


async def test_refused_at_submission(
    web: Server, hook_settings: Settings, library_settings: Settings, registry: TaskRegistry
) -> None:
    async with api(hook_settings, registry) as client:
        response = await client.post(
            "/tasks",
            json={
                "type": "notify.webhook",
                "params": {"url": "https://example.org/", "payload": 1},
            },
        )
        error = refusal(response)
        assert error["loc"] == ["body", "params", "url"]
        assert "TASKSERVICE_HTTP_ALLOWED_HOSTS" in error["msg"]
    # Without a signing key there are no webhooks.
    async with api(library_settings, registry) as client:
        response = await client.post(
            "/tasks", json={"type": "notify.webhook", "params": {"url": web.url("/"), "payload": 1}}
        )
        error = refusal(response)
        assert error["loc"] == ["body", "params", "url"]
        assert "TASKSERVICE_CALLBACK_SECRET" in error["msg"]
