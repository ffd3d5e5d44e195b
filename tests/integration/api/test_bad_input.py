"""Input that once answered 500: each is now a 4xx in FastAPI's error shape, and
every 5xx (unhandled ones too) is counted in /metrics and answered as JSON."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from taskservice.api.app import create_app
from taskservice.registry import TaskRegistry
from taskservice.settings import Settings

ECHO: dict[str, Any] = {"type": "echo", "params": {"value": 1}}
pytestmark = pytest.mark.anyio  # at collection: parametrized async tests need it then

SCHEDULE: dict[str, Any] = {**ECHO, "name": "every-minute", "cron": "* * * * *"}


def assert_error_shape(response: httpx.Response, *statuses: int) -> list[dict[str, Any]]:
    """The response is one of `statuses` with FastAPI's {"detail": [{loc, msg, type}]}."""
    assert response.status_code in statuses, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    detail: list[dict[str, Any]] = response.json()["detail"]
    assert detail
    for error in detail:
        assert isinstance(error["loc"], list)
        assert isinstance(error["msg"], str)
        assert isinstance(error["type"], str)
    return detail


# Each body as JSON text, since several are not what json.dumps would write.
BAD_TASK_BODIES = {
    "nul in unique_key": '{"type": "echo", "params": {"value": 1}, "unique_key": "a\\u0000b"}',
    "surrogate in params value": '{"type": "echo", "params": {"value": "\\ud800"}}',
    "surrogate in params key": '{"type": "echo", "params": {"value": 1, "\\ud800": 1}}',
    "surrogate in nested value": '{"type": "echo", "params": {"value": {"a": ["\\udfff"]}}}',
    "surrogate in type": '{"type": "ec\\ud800ho", "params": {"value": 1}}',
    "surrogate in unique_key": '{"type": "echo", "params": {"value": 1}, "unique_key": "\\ud800"}',
    "timeout 1e309": '{"type": "echo", "params": {"value": 1}, "timeout_seconds": 1e309}',
    "timeout Infinity": '{"type": "echo", "params": {"value": 1}, "timeout_seconds": Infinity}',
    "timeout NaN": '{"type": "echo", "params": {"value": 1}, "timeout_seconds": NaN}',
    "run_at year 1 east of UTC": (
        '{"type": "echo", "params": {"value": 1}, "run_at": "0001-01-01T00:00+01:00"}'
    ),
    "run_at year 9999 west of UTC": (
        '{"type": "echo", "params": {"value": 1}, "run_at": "9999-12-31T23:59:59-23:59"}'
    ),
}


@pytest.mark.parametrize("body", list(BAD_TASK_BODIES.values()), ids=list(BAD_TASK_BODIES))
async def test_bad_submission_is_422(client: httpx.AsyncClient, body: str) -> None:
    response = await client.post(
        "/tasks", content=body, headers={"content-type": "application/json"}
    )
    assert_error_shape(response, 422)


async def test_raw_surrogate_bytes_in_a_body_are_422(client: httpx.AsyncClient) -> None:
    # ED A0 80 is how CESU-8 writes U+D800; Python's JSON parser lets it through.
    body = b'{"type": "echo", "params": {"value": "\xed\xa0\x80"}}'
    response = await client.post(
        "/tasks", content=body, headers={"content-type": "application/json"}
    )
    [error] = assert_error_shape(response, 422)
    assert error["loc"] == ["body", "params"]
    assert "surrogate" in error["msg"]


async def test_a_body_not_in_utf8_is_400(client: httpx.AsyncClient) -> None:
    body = b'{"type": "echo", "params": {"value": "\xff"}}'
    response = await client.post(
        "/tasks", content=body, headers={"content-type": "application/json"}
    )
    [error] = assert_error_shape(response, 400)
    assert error["loc"] == ["body"]
    assert "UTF-8" in error["msg"]


ECHO_JSON = '"type": "echo", "params": {"value": 1}'
BAD_SCHEDULE_BODIES = {
    "nul in name": "{" + ECHO_JSON + ', "name": "a\\u0000", "cron": "* * * * *"}',
    "surrogate in name": "{" + ECHO_JSON + ', "name": "\\ud800", "cron": "* * * * *"}',
    "surrogate in params": (
        '{"type": "echo", "params": {"value": "\\ud800"}, "name": "x", "cron": "* * * * *"}'
    ),
    "blank name": "{" + ECHO_JSON + ', "name": " ", "cron": "* * * * *"}',
    "control character in name": "{" + ECHO_JSON + ', "name": "a\\nb", "cron": "* * * * *"}',
    "cron 30 February": "{" + ECHO_JSON + ', "name": "x", "cron": "0 0 30 2 *"}',
    "cron 31 April": "{" + ECHO_JSON + ', "name": "x", "cron": "0 0 31 4 *"}',
    "interval true": "{" + ECHO_JSON + ', "name": "x", "interval_seconds": true}',
    "interval Infinity": "{" + ECHO_JSON + ', "name": "x", "interval_seconds": Infinity}',
    "enabled a string": "{" + ECHO_JSON + ', "name": "x", "cron": "* * * * *", "enabled": "no"}',
}


@pytest.mark.parametrize("body", list(BAD_SCHEDULE_BODIES.values()), ids=list(BAD_SCHEDULE_BODIES))
async def test_bad_schedule_is_422(client: httpx.AsyncClient, body: str) -> None:
    response = await client.post(
        "/scheduler/jobs", content=body, headers={"content-type": "application/json"}
    )
    assert_error_shape(response, 422)


BAD_SCHEDULE_PATCHES = {
    "surrogate in params": '{"params": {"value": "\\ud800"}}',
    "nul in params": '{"params": {"value": "\\u0000"}}',
    "cron 30 February": '{"cron": "0 0 30 2 *"}',
    "cron 31 April": '{"cron": "0 0 31 4 *"}',
    "interval true": '{"interval_seconds": true}',
}


@pytest.mark.parametrize(
    "body", list(BAD_SCHEDULE_PATCHES.values()), ids=list(BAD_SCHEDULE_PATCHES)
)
async def test_bad_schedule_patch_is_422(client: httpx.AsyncClient, body: str) -> None:
    created = await client.post("/scheduler/jobs", json=SCHEDULE)
    assert created.status_code == 201, created.text
    response = await client.patch(
        f"/scheduler/jobs/{created.json()['id']}",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert_error_shape(response, 422)
    after = await client.get(f"/scheduler/jobs/{created.json()['id']}")
    assert after.json()["cron"] == "* * * * *"


BAD_QUERIES = {
    "nul in queue": "queue=x%00y",
    "nul in type": "type=x%00y",
    "unknown parameter": "stauts=failed",
    "created_after year 1": "created_after=0001-01-01T00:00%2B01:00",
    "created_before year 9999": "created_before=9999-12-31T23:59:59-23:59",
    "created_before a number": "created_before=0.5",
    "created_after a number": "created_after=1700000000",
    "cursor garbage": "cursor=abc",
    "cursor too large": "cursor=99999999999999999999",
    "cursor with sign": "cursor=%2B5",
    "limit 0": "limit=0",
    "limit huge": "limit=1000000000000000000000",
}


@pytest.mark.parametrize("query", list(BAD_QUERIES.values()), ids=list(BAD_QUERIES))
async def test_bad_list_filter_is_422(client: httpx.AsyncClient, query: str) -> None:
    response = await client.get(f"/tasks?{query}")
    assert_error_shape(response, 422)


@pytest.mark.parametrize("task_id", ["1.0", "+5", "0646", "-1", "0", "1e3", "9223372036854775808"])
@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("GET", "/tasks/{}"),
        ("DELETE", "/tasks/{}"),
        ("POST", "/tasks/{}/retry"),
        ("GET", "/scheduler/jobs/{}"),
        ("POST", "/scheduler/jobs/{}/pause"),
    ],
)
async def test_ids_must_be_canonical_integers(
    client: httpx.AsyncClient, method: str, template: str, task_id: str
) -> None:
    response = await client.request(method, template.format(task_id))
    [error] = assert_error_shape(response, 422)
    assert error["loc"][0] == "path"


async def test_canonical_ids_still_work(client: httpx.AsyncClient) -> None:
    created = await client.post("/tasks", json=ECHO)
    response = await client.get(f"/tasks/{created.json()['id']}")
    assert response.status_code == 200


def _http_500_count(metrics_text: str) -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("taskservice_http_requests_total{") and 'status="500"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
async def crashing_client(settings: Settings, registry: TaskRegistry) -> Any:
    """The real app with one extra route that raises, as a bug would."""
    app: FastAPI = create_app(settings, registry=registry)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug with a secret in its message")

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://taskservice",
        ) as http,
    ):
        yield http


async def test_unhandled_error_is_json_500_counted_in_metrics(
    crashing_client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(3):
        response = await crashing_client.get("/boom")
        [error] = assert_error_shape(response, 500)
        assert error["type"] == "internal"
        assert "secret" not in response.text
        assert "Traceback" not in response.text
    assert "a bug with a secret" in caplog.text  # the traceback goes to the log
    metrics = await crashing_client.get("/metrics")
    assert _http_500_count(metrics.text) == 3
