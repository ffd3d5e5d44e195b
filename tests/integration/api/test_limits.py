"""What one client can hold: body size and time, requests in progress, page size;
over real HTTP (uvicorn) where chunked and slow bodies matter."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from taskservice.api.app import create_app
from taskservice.registry import TaskRegistry
from taskservice.settings import Settings
from tests.api_server import serving

MAX_BODY = 4096
BODY_TIMEOUT = 1.0


@pytest.fixture
def limited(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "max_body_bytes": MAX_BODY,
            "body_timeout_seconds": BODY_TIMEOUT,
            "max_requests_in_flight": 2,
            "list_page_bytes": 2048,
        }
    )


@pytest.fixture
def base_url(limited: Settings, registry: TaskRegistry) -> Iterator[str]:
    with serving(create_app(limited, registry=registry)) as url:
        yield url


@pytest.fixture
async def http(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        yield client


def _echo_body(size: int) -> bytes:
    """A valid submission of about `size` bytes."""
    return b'{"type": "echo", "params": {"value": "' + b"x" * size + b'"}}'


async def test_a_body_under_the_limit_is_accepted(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/tasks", content=_echo_body(MAX_BODY - 100), headers={"content-type": "application/json"}
    )
    assert response.status_code == 201, response.text


async def test_a_large_body_is_413_by_its_content_length(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/tasks", content=_echo_body(MAX_BODY * 10), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    [error] = response.json()["detail"]
    assert error["type"] == "body_too_large"
    assert error["loc"] == ["body"]
    assert response.headers["connection"] == "close"


def _raw_request(base_url: str, head: bytes, body: bytes) -> socket.socket:
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(head + body)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


async def test_a_large_chunked_body_is_413(base_url: str, http: httpx.AsyncClient) -> None:
    # No Content-Length: only counting the bytes as they come can stop it.
    head = (
        b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    start = b'{"type": "echo", "params": {"value": "'
    chunks = [start, *[b"x" * 1000] * (MAX_BODY // 1000 + 2)]
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    sock = await asyncio.to_thread(_raw_request, base_url, head, body)  # no last chunk
    with sock:
        answer = await asyncio.to_thread(_read_all, sock)
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert b'"type":"body_too_large"' in answer
    assert (await http.get("/tasks")).json()["items"] == []
    metrics = await http.get("/metrics")
    assert 'route="/tasks",status="413"' in metrics.text


async def test_a_body_shorter_than_its_content_length_is_408_and_closed(base_url: str) -> None:
    head = (
        b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    started = time.monotonic()
    sock = await asyncio.to_thread(_raw_request, base_url, head, b'{"type": ')
    with sock:
        # Returns only once the server closes the connection.
        answer = await asyncio.to_thread(_read_all, sock)
    waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b'"type":"body_timeout"' in answer
    assert BODY_TIMEOUT <= waited < BODY_TIMEOUT + 20  # generous: the machine is shared


async def test_a_slow_body_is_408_even_if_bytes_keep_coming(base_url: str) -> None:
    head = (
        b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )

    def trickle() -> bytes:
        with _raw_request(base_url, head, b"{") as sock:
            with contextlib.suppress(OSError):  # the server may close while we write
                for _ in range(40):
                    time.sleep(0.1)
                    sock.sendall(b" ")
            return _read_all(sock)

    answer = await asyncio.to_thread(trickle)
    assert answer.startswith(b"HTTP/1.1 408 "), answer


@contextlib.asynccontextmanager
async def _jobs_table_locked(database_url: str) -> AsyncIterator[None]:
    """Hold an exclusive lock that makes every read of tasks wait."""
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE procrastinate_jobs IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await conn.close()


async def test_past_the_in_flight_limit_requests_get_503_with_retry_after(
    http: httpx.AsyncClient, database_url: str
) -> None:
    async def list_once_admitted() -> httpx.Response:
        while True:  # a probe below may hold a place for a moment: try again
            response = await http.get("/tasks")
            if response.status_code != 503:
                return response
            await asyncio.sleep(0.05)

    async with _jobs_table_locked(database_url):
        stuck = [asyncio.create_task(list_once_admitted()) for _ in range(2)]
        deadline = time.monotonic() + 20
        while True:  # until both hold their place (they wait on the lock)
            response = await http.get("/task-types")  # no database: never waits
            if response.status_code == 503:
                break
            assert time.monotonic() < deadline, "the in-flight limit never applied"
            await asyncio.sleep(0.05)
        [error] = response.json()["detail"]
        assert error["type"] == "overloaded"
        assert response.headers["retry-after"] == "1"
        assert (await http.get("/health/live")).status_code == 200  # probes are never refused
    assert [(await task).status_code for task in stuck] == [200, 200]
    assert (await http.get("/task-types")).status_code == 200
    metrics = await http.get("/metrics")
    assert 'route="/task-types",status="503"' in metrics.text


async def _submit(http: httpx.AsyncClient, value: Any) -> int:
    response = await http.post("/tasks", json={"type": "echo", "params": {"value": value}})
    assert response.status_code == 201, response.text
    task_id: int = response.json()["id"]
    return task_id


async def test_a_list_page_ends_at_its_byte_budget_and_the_cursor_goes_on(
    http: httpx.AsyncClient,
) -> None:
    # Params of ~900 bytes each: two fit the 2048-byte budget, three do not.
    ids = [await _submit(http, "x" * 880) for _ in range(5)]
    big = await _submit(http, "y" * 3000)  # alone over the budget
    pages: list[list[int]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 50, **({"cursor": cursor} if cursor else {})}
        page = (await http.get("/tasks", params=params)).json()
        pages.append([task["id"] for task in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [[big], ids[4:2:-1], ids[2:0:-1], ids[:1]]
    # One task is always whole.
    assert (await http.get(f"/tasks/{big}")).json()["params"]["value"] == "y" * 3000


async def test_a_short_page_under_the_budget_has_no_cursor(http: httpx.AsyncClient) -> None:
    first = await _submit(http, 1)
    second = await _submit(http, 2)
    page = (await http.get("/tasks", params={"limit": 2})).json()
    assert [task["id"] for task in page["items"]] == [second, first]
    assert page["next_cursor"] is None
