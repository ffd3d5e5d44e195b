"""Outbound HTTP of the task library: an httpx client that connects only to
addresses checked against TASKSERVICE_HTTP_ALLOWED_HOSTS, and bounded reads."""

from __future__ import annotations

import ssl
import zlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import httpcore

from taskservice.errors import ParamRefused
from taskservice.services.destinations import (
    DestinationRefused,
    check_destination,
    connectable_addresses,
)
from taskservice.settings import Settings

if TYPE_CHECKING:
    # Imported where used: importing httpx pulls in rich and pygments when they
    # are installed (its CLI), which the image does not ship (tests/unit/test_deploy.py).
    import httpx

SETTING = "TASKSERVICE_HTTP_ALLOWED_HOSTS"

__all__ = [
    "SETTING",
    "DestinationRefused",
    "UndecodableBody",
    "check_url",
    "client",
    "read_capped",
]

# The content codings read_capped decodes, and all the client asks for.
ACCEPT_ENCODING = "gzip, deflate"


class UndecodableBody(ValueError):
    """A response body in a content coding the service does not decode, or corrupt."""


class CheckedNetwork(httpcore.AsyncNetworkBackend):
    """httpcore's network, resolving each host itself: a connection goes to an
    address that passed the allowlist, never to what a second DNS answer says
    (DNS rebinding). TLS is untouched: httpcore still verifies the certificate
    against, and sends SNI for, the URL's host name."""

    def __init__(self, allowed: Sequence[str], *, setting: str = SETTING) -> None:
        self._allowed = list(allowed)
        self._setting = setting
        self._network = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await connectable_addresses(host, port, self._allowed, setting=self._setting)
        failure: Exception = httpcore.ConnectError(f"{host!r} has no address")
        for address in addresses:
            try:
                return await self._network.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise DestinationRefused("outbound calls go over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._network.sleep(seconds)


def client(
    settings: Settings,
    *,
    timeout: float,
    follow_redirects: bool = False,
    allowed: Sequence[str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> httpx.AsyncClient:
    """An httpx client for outbound calls: every connection (each redirect hop
    included, so following redirects stays within the allowlist) is checked by
    CheckedNetwork against `allowed` (default: TASKSERVICE_HTTP_ALLOWED_HOSTS);
    a refused one raises DestinationRefused. No proxy or .netrc from the
    environment. Use it as `async with client(...) as http:`."""
    import httpx

    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx takes no network backend of its own: its pool is swapped for one on
    # CheckedNetwork, built as httpx builds it (certifi's CAs, HTTP/1.1).
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context or httpx.create_ssl_context(trust_env=False),
        network_backend=CheckedNetwork(settings.http_allowed_hosts if allowed is None else allowed),
    )
    return httpx.AsyncClient(
        transport=transport,
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_redirects=5,
        trust_env=False,
        headers={"User-Agent": "taskservice", "Accept-Encoding": ACCEPT_ENCODING},
    )


async def check_url(url: str, settings: Settings, loc: tuple[str | int, ...]) -> None:
    """A task type's check of an outbound URL param at `loc`: ParamRefused (a
    422 at submission) unless the allowlist lets it through, by name and by
    the addresses it resolves to now."""
    try:
        await check_destination(
            url, settings.http_allowed_hosts, setting=SETTING, field=str(loc[-1])
        )
    except DestinationRefused as exc:
        raise ParamRefused(loc, str(exc), "destination_refused") from exc


def _decompressor(encoding: str) -> zlib._Decompress | None:
    """A decompressor for the response's Content-Encoding; None for none."""
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return None
    if coding in ("gzip", "x-gzip"):
        return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    if coding == "deflate":  # zlib-wrapped, as RFC 9110 says (raw deflate: see read_capped)
        return zlib.decompressobj(wbits=zlib.MAX_WBITS)
    raise UndecodableBody(f"the response's Content-Encoding {encoding!r} is not gzip or deflate")


async def read_capped(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of a streamed response's body, decoded (gzip or
    deflate), and whether there was more; what is past the limit is never read.
    Decompression is bounded too: each step yields at most what the limit still
    allows, so a small compressed body that expands to gigabytes (httpx's own
    decoding inflates a whole network read at once, and stacked codings
    multiply) never does in memory. UndecodableBody for another coding or a
    corrupt body."""
    decompressor = _decompressor(response.headers.get("content-encoding", ""))
    first = True
    chunks: list[bytes] = []
    size = 0
    async for raw in response.aiter_raw():
        pending = raw
        while pending:
            if decompressor is None:
                data, pending = pending, b""
            else:
                try:
                    data = decompressor.decompress(pending, limit - size + 1)
                except zlib.error as exc:
                    coding = response.headers.get("content-encoding", "").strip().lower()
                    if not (first and coding == "deflate"):
                        raise UndecodableBody(f"the response's body is corrupt: {exc}") from exc
                    # Some servers send raw deflate for `deflate` (as httpx allows).
                    decompressor = zlib.decompressobj(wbits=-zlib.MAX_WBITS)
                    first = False
                    continue
                pending = decompressor.unconsumed_tail
            first = False
            if size + len(data) > limit:
                chunks.append(data[: limit - size])
                return b"".join(chunks), True
            chunks.append(data)
            size += len(data)
    return b"".join(chunks), False
