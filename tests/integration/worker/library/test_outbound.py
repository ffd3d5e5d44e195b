"""The outbound client on its own: every connection goes to an address it
resolved and checked itself, so a second DNS answer cannot reach inside."""

from __future__ import annotations

import gzip
import socket
import ssl
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskservice.errors import ParamRefused
from taskservice.settings import Settings
from taskservice.worker.library import outbound
from tests.integration.worker.library.conftest import Answer, Server, serving

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


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9)


async def test_read_capped_decodes_gzip_and_deflate(web: Server) -> None:
    text = b"line\n" * 1000
    bodies = {
        "gzip": _gzip(text),
        "deflate": zlib.compress(text),
        "identity": text,
    }
    async with outbound.client(_settings("127.0.0.1"), timeout=5) as http:
        for coding, body in bodies.items():
            url = web.script(f"/{coding}", Answer(200, body, {"Content-Encoding": coding}))
            async with http.stream("GET", url) as response:
                assert await outbound.read_capped(response, 100_000) == (text, False)
    # The client asks for no other coding.
    assert web.received[0].headers["accept-encoding"] == "gzip, deflate"


async def test_a_compression_bomb_is_never_inflated_past_the_limit(web: Server) -> None:
    """64 MiB of zeros gzipped twice (about 1 KiB on the wire, `Content-Encoding:
    gzip, gzip` for httpx to inflate both) is refused as a coding the service
    does not decode; gzipped once (64 KiB) it is read only up to the limit:
    the peak of memory allocated stays far under the inflated size."""
    inflated = 64 * 1024 * 1024
    once = _gzip(bytes(inflated))
    url = web.script("/twice", Answer(200, _gzip(once), {"Content-Encoding": "gzip, gzip"}))
    async with outbound.client(_settings("127.0.0.1"), timeout=5) as http:
        async with http.stream("GET", url) as response:
            with pytest.raises(outbound.UndecodableBody, match="not gzip or deflate"):
                await outbound.read_capped(response, 1000)
        url = web.script("/once", Answer(200, once, {"Content-Encoding": "gzip"}))
        async with http.stream("GET", url) as response:
            tracemalloc.start()
            try:
                body, truncated = await outbound.read_capped(response, 1000)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    assert (body, truncated) == (bytes(1000), True)
    assert peak < 4 * 1024 * 1024, peak


async def test_a_corrupt_body_is_undecodable(web: Server) -> None:
    url = web.script("/bad", Answer(200, b"not gzip at all", {"Content-Encoding": "gzip"}))
    async with (
        outbound.client(_settings("127.0.0.1"), timeout=5) as http,
        http.stream("GET", url) as response,
    ):
        with pytest.raises(outbound.UndecodableBody, match="corrupt"):
            await outbound.read_capped(response, 1000)


async def test_https_goes_to_the_checked_address_and_verifies_the_urls_name(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client connects to the address it resolved and checked, while TLS
    still verifies the certificate against the URL's host name (and sends it
    as SNI): a name the certificate does not carry fails, on the same server."""
    cert, key = certificate
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    real = socket.getaddrinfo

    def local(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in ("tls.example", "other.example"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local)
    trusting = ssl.create_default_context(cafile=str(cert))
    settings = _settings("tls.example", "other.example")
    with serving(tls=server_tls) as web:
        url = web.script("/ok", Answer(200, b"secure"), host="tls.example")
        assert url.startswith("https://tls.example:")
        async with outbound.client(settings, timeout=5, ssl_context=trusting) as http:
            assert (await http.get(url)).text == "secure"
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await http.get(url.replace("tls.example", "other.example"))
        # Without the test's CA (the default context), the self-signed one is refused.
        async with outbound.client(settings, timeout=5) as http:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await http.get(url)
    assert [r.path for r in web.received] == ["/ok"]
