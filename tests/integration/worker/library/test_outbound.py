"""The outbound client on its own: every connection goes to an address it
resolved and checked itself, so a second DNS answer cannot reach inside."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from taskservice.errors import ParamRefused
from taskservice.settings import Settings
from taskservice.worker.library import outbound
from tests.integration.worker.library.conftest import Answer, Server

PUBLIC = "93.184.215.14"


def _settings(*allowed: str) -> Settings:
    return Settings.model_construct(http_allowed_hosts=list(allowed))


async def test_a_listed_address_is_reached(web: Server) -> None:
    url = web.script("/ok", Answer(200, b"hi"))
    async with outbound.client(_settings("127.0.0.1"), timeout=5) as http:
        response = await http.get(url)
    assert (response.status_code, response.text) == (200, "hi")


async def test_a_name_resolving_to_loopback_needs_to_be_listed_exactly(web: Server) -> None:
    url = web.script("/ok", Answer(200, b"hi"), host="localhost")
    async with outbound.client(_settings("*"), timeout=5) as http:
        with pytest.raises(outbound.DestinationRefused, match="internal address"):
            await http.get(url)
    async with outbound.client(_settings(".example.com"), timeout=5) as http:
        with pytest.raises(outbound.DestinationRefused, match="not in TASKSERVICE_HTTP"):
            await http.get(url)
    async with outbound.client(_settings("localhost"), timeout=5) as http:
        assert (await http.get(url)).text == "hi"


async def test_a_second_dns_answer_pointing_inside_is_refused(
    web: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name resolves to a public address when the task is
    checked, then to loopback when it connects. The connection uses its own
    answer, and checks it."""
    answers = iter([PUBLIC, "127.0.0.1"])
    real = socket.getaddrinfo

    def rebinding(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.example":
            return real(host, port, *args, **kwargs)
        address = next(answers)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    settings = _settings("*")
    url = f"http://rebind.example:{web.port}/echo"
    await outbound.check_url(url, settings, ("url",))  # first answer: public
    async with outbound.client(settings, timeout=5) as http:
        with pytest.raises(outbound.DestinationRefused, match=r"internal address 127\.0\.0\.1"):
            await http.get(url)
    assert web.received == []


async def test_check_url_refuses_with_the_param_location() -> None:
    with pytest.raises(ParamRefused) as caught:
        await outbound.check_url("http://example.org/", _settings("127.0.0.1"), ("source",))
    assert caught.value.loc == ("source",)
    assert caught.value.kind == "destination_refused"


async def test_read_capped_stops_at_the_limit(web: Server) -> None:
    url = web.script("/big", Answer(200, b"a" * 100_000))
    async with outbound.client(_settings("127.0.0.1"), timeout=5) as http:
        async with http.stream("GET", url) as response:
            body, truncated = await outbound.read_capped(response, 10)
        assert (body, truncated) == (b"a" * 10, True)
        async with http.stream("GET", url) as response:
            body, truncated = await outbound.read_capped(response, 100_000)
        assert (len(body), truncated) == (100_000, False)
