"""http.request against a real HTTP server on loopback, submitted through the API
and run by a real worker: results, retries, refusals and secrets."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from pydantic import SecretStr

from taskservice.registry import TaskRegistry
from taskservice.settings import Settings
from tests.conftest import running_worker
from tests.helpers import submit, wait_for_status
from tests.integration.worker.library.conftest import Answer, Server, api, refusal
from tests.processes import free_port

JSON = {"Content-Type": "application/json"}
SECRET = "sk_live_do-not-leak"


async def _run(
    settings: Settings, registry: TaskRegistry, params: dict[str, Any], **options: Any
) -> dict[str, Any]:
    """Submit one http.request, run a worker until it ends, return the task."""
    async with api(settings, registry) as client:
        task = await submit(client, type="http.request", params=params, **options)
        async with running_worker(settings, registry):
            return await wait_for_status(client, task["id"], "completed", "failed", within=20)


async def test_a_json_answer_is_decoded(
    web: Server, library_settings: Settings, registry: TaskRegistry
) -> None:
    url = web.script(
        "/orders", Answer(201, b'{"id": 7, "items": [1, 2]}', {**JSON, "X-Request-Id": "r1"})
    )
    task = await _run(
        library_settings,
        registry,
        {"method": "POST", "url": url, "json": {"sku": "a"}, "headers": {"X-Trace": "t"}},
    )
    assert task["status"] == "completed", task["error"]
    result = task["result"]
    assert (result["status"], result["body"], result["truncated"]) == (
        201,
        {"id": 7, "items": [1, 2]},
        False,
    )
    assert result["headers"]["x-request-id"] == "r1"
    [sent] = web.to("/orders")
    assert (sent.method, json.loads(sent.body)) == ("POST", {"sku": "a"})
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["x-trace"] == "t"


async def test_a_text_answer_stays_text_and_a_large_one_is_cut(
    web: Server, library_settings: Settings, registry: TaskRegistry
) -> None:
    text_url = web.script("/text", Answer(200, b"plain words", {"Content-Type": "text/plain"}))
    task = await _run(library_settings, registry, {"url": text_url})
    assert task["result"]["body"] == "plain words"

    capped = library_settings.model_copy(update={"http_max_response_bytes": 1000})
    big = json.dumps({"data": "x" * 5000}).encode()
    big_url = web.script("/big", Answer(200, big, JSON))
    task = await _run(capped, registry, {"url": big_url})
    result = task["result"]
    # Cut JSON is not JSON: it comes back as the text that was read.
    assert (result["truncated"], len(result["body"])) == (True, 1000)
    assert result["body"] == big[:1000].decode()


async def test_a_4xx_fails_at_once_with_the_response_in_the_error(
    web: Server, library_settings: Settings, registry: TaskRegistry
) -> None:
    url = web.script("/missing", Answer(404, b'{"error": "no such order"}', JSON))
    task = await _run(library_settings, registry, {"url": url}, backoff_seconds=0.1)
    assert task["status"] == "failed"
    assert task["attempts"] == 1
    assert len(web.to("/missing")) == 1
    error = task["error"]
    assert (error["type"], error["message"]) == ("DoNotRetry", f"HTTP 404 from {url}")
    assert error["details"]["response"]["status"] == 404
    assert error["details"]["response"]["body"] == {"error": "no such order"}


async def test_a_5xx_is_retried(
    web: Server, library_settings: Settings, registry: TaskRegistry
) -> None:
    url = web.script("/flaky", Answer(503), Answer(502), Answer(200, b'"fine"', JSON))
    task = await _run(library_settings, registry, {"url": url}, backoff_seconds=0.1)
    assert task["status"] == "completed", task["error"]
    assert task["attempts"] == 3
    assert task["result"]["body"] == "fine"


async def test_the_last_5xx_keeps_its_response(
    web: Server, library_settings: Settings, registry: TaskRegistry
) -> None:
    url = web.script("/down", Answer(500, b"maintenance", {"Content-Type": "text/plain"}))
    task = await _run(library_settings, registry, {"url": url}, backoff_seconds=0.1, max_attempts=2)
    assert (task["status"], task["attempts"]) == ("failed", 2)
    assert task["error"]["type"] == "RetryLater"
    assert task["error"]["details"]["response"]["body"] == "maintenance"


async def test_a_429_is_retried_after_its_retry_after(
    web: Server, library_settings: Settings, registry: TaskRegistry
) -> None:
    url = web.script(
        "/limited", Answer(429, headers={"Retry-After": "2"}), Answer(200, b"{}", JSON)
    )
    task = await _run(library_settings, registry, {"url": url}, backoff_seconds=0.1)
    assert task["status"] == "completed", task["error"]
    first, second = web.to("/limited")
    # The job's own backoff is 0.1 s: the wait is the server's.
    assert second.at - first.at >= 2.0


async def test_a_lost_connection_is_retried(
    library_settings: Settings, registry: TaskRegistry
) -> None:
    url = f"http://127.0.0.1:{free_port()}/nobody-listens"
    task = await _run(library_settings, registry, {"url": url}, backoff_seconds=0.1, max_attempts=2)
    assert (task["status"], task["attempts"]) == ("failed", 2)
    assert task["error"]["type"] == "RetryLater"
    assert "ConnectError" in task["error"]["message"]


async def test_a_secret_is_sent_but_never_shown(
    web: Server, library_settings: Settings, registry: TaskRegistry
) -> None:
    settings = library_settings.model_copy(update={"secrets": {"shop": SecretStr(SECRET)}})
    task = await _run(settings, registry, {"url": web.url("/echo"), "auth": "secret:SHOP"})
    assert task["status"] == "completed", task["error"]
    [sent] = web.to("/echo")
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    # The server echoed it; the result blanks it.
    assert task["result"]["body"]["headers"]["authorization"] == "[redacted]"
    assert SECRET not in json.dumps(task)

    task = await _run(
        settings,
        registry,
        {"url": web.url("/echo"), "auth": "secret:shop", "auth_scheme": "header:X-Api-Key"},
    )
    assert web.to("/echo")[-1].headers["x-api-key"] == SECRET
    assert SECRET not in json.dumps(task)


async def test_a_secret_does_not_follow_a_redirect_to_another_origin(
    web: Server, library_settings: Settings, registry: TaskRegistry
) -> None:
    settings = library_settings.model_copy(
        update={
            "secrets": {"shop": SecretStr(SECRET)},
            "http_allowed_hosts": ["127.0.0.1", "localhost"],
        }
    )
    same = web.script("/same", Answer(302, headers={"Location": "/echo"}))
    other = web.script("/other", Answer(302, headers={"Location": web.url("/echo", "localhost")}))
    base = {"auth": "secret:shop", "auth_scheme": "header:X-Api-Key", "follow_redirects": True}
    task = await _run(settings, registry, {**base, "url": same})
    assert task["result"]["status"] == 200
    assert web.to("/echo")[-1].headers["x-api-key"] == SECRET
    task = await _run(settings, registry, {**base, "url": other})
    assert task["result"]["status"] == 200, task
    assert "x-api-key" not in web.to("/echo")[-1].headers
    # Not following: the redirect is the result.
    task = await _run(settings, registry, {"url": same})
    assert (task["result"]["status"], task["result"]["headers"]["location"]) == (302, "/echo")


async def test_a_redirect_to_a_host_not_allowed_is_refused(
    web: Server, library_settings: Settings, registry: TaskRegistry
) -> None:
    # localhost is 127.0.0.1 too, but only the address is listed.
    url = web.script("/away", Answer(307, headers={"Location": web.url("/echo", "localhost")}))
    task = await _run(
        library_settings, registry, {"url": url, "follow_redirects": True}, backoff_seconds=0.1
    )
    assert (task["status"], task["attempts"]) == ("failed", 1)
    assert "'localhost' is not in TASKSERVICE_HTTP_ALLOWED_HOSTS" in task["error"]["message"]
    assert web.to("/echo") == []


async def test_refused_at_submission(
    web: Server, library_settings: Settings, settings: Settings, registry: TaskRegistry
) -> None:
    split = library_settings.model_copy(update={"secrets": {"split": SecretStr("a\nb")}})
    async with api(split, registry) as client:
        for params, loc, reason in [
            ({"url": "http://example.org/"}, "url", "not in TASKSERVICE_HTTP_ALLOWED_HOSTS"),
            ({"url": "ftp://127.0.0.1/"}, "url", "http:// or https://"),
            ({"url": "http://u:p@127.0.0.1/"}, "url", "credentials"),
            ({"url": web.url("/"), "auth": "secret:nope"}, "auth", "TASKSERVICE_SECRET_NOPE"),
            ({"url": web.url("/"), "auth": "secret:split"}, "auth", "line break"),
        ]:
            error = refusal(
                await client.post("/tasks", json={"type": "http.request", "params": params})
            )
            assert error["loc"] == ["body", "params", loc]
            assert reason in error["msg"]
        error = refusal(
            await client.post(
                "/tasks",
                json={
                    "type": "http.request",
                    "params": {"url": web.url("/"), "json": 1, "body": "x"},
                },
            )
        )
        assert "json or body" in error["msg"]
        schedule = {
            "name": "poll",
            "type": "http.request",
            "params": {"url": "https://example.org/"},
            "interval_seconds": 60,
        }
        error = refusal(await client.post("/scheduler/jobs", json=schedule))
        assert error["loc"] == ["body", "params", "url"]
        schedule["params"] = {"url": web.url("/ping")}
        assert (await client.post("/scheduler/jobs", json=schedule)).status_code == 201
    # A name that resolves to loopback is refused unless listed exactly.
    wildcard = library_settings.model_copy(update={"http_allowed_hosts": ["*"]})
    async with api(wildcard, registry) as client:
        response = await client.post(
            "/tasks", json={"type": "http.request", "params": {"url": web.url("/", "localhost")}}
        )
        assert "internal address" in refusal(response)["msg"]
    # No allowlist, no outbound calls.
    async with api(settings, registry) as client:
        response = await client.post(
            "/tasks", json={"type": "http.request", "params": {"url": web.url("/")}}
        )
        assert "TASKSERVICE_HTTP_ALLOWED_HOSTS is empty" in refusal(response)["msg"]


async def test_a_schedule_calls_an_api_periodically(
    web: Server, library_settings: Settings, registry: TaskRegistry
) -> None:
    """The periodic API call of README: a schedule running http.request."""
    url = web.script("/ping", Answer(204))
    schedule = {
        "name": "ping-partner",
        "type": "http.request",
        "params": {"method": "POST", "url": url, "json": {"source": "taskservice"}},
        "interval_seconds": 1,
    }
    async with api(library_settings, registry) as client:
        response = await client.post("/scheduler/jobs", json=schedule)
        assert response.status_code == 201, response.text
        async with running_worker(library_settings, registry):
            deadline = time.monotonic() + 15
            while len(web.to("/ping")) < 2:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
    assert json.loads(web.to("/ping")[0].body) == {"source": "taskservice"}
