"""files.transfer's http(s) source: one streamed GET of an allowed URL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx

from taskservice.services.destinations import DestinationRefused, check_destination
from taskservice.worker.library.errors import TransferInterrupted, TransferRefused
from taskservice.worker.library.locations import HTTP_SETTING

# Per read, connect and write; a slow but steady download is not cut short.
TIMEOUT_SECONDS = 30.0


@contextlib.asynccontextmanager
async def open_http(
    url: str, allowed_hosts: list[str], chunk_size: int
) -> AsyncIterator[tuple[int | None, AsyncIterator[bytes]]]:
    """The size (Content-Length, if sent) and the bytes of `url`. Redirects are
    not followed (their target would escape the allowlist). Connection errors,
    timeouts, 429 and 5xx are TransferInterrupted (retried); other answers
    TransferRefused."""
    # The address check right before the request, against DNS rebinding since
    # submission. (The library's outbound client checks at connect time instead.)
    try:
        await check_destination(url, allowed_hosts, setting=HTTP_SETTING, field="source")
    except DestinationRefused as exc:
        raise TransferRefused(f"source refused: {exc}") from exc
    try:
        async with (
            httpx.AsyncClient(timeout=TIMEOUT_SECONDS, follow_redirects=False) as client,
            # identity: the bytes as stored, and a Content-Length that counts them.
            client.stream("GET", url, headers={"accept-encoding": "identity"}) as response,
        ):
            status = response.status_code
            if status == 429 or status >= 500:
                raise TransferInterrupted(f"the source answered {status}")
            if status != 200:
                raise TransferRefused(
                    f"the source answered {status}; expected 200", details={"status": status}
                )
            length = response.headers.get("content-length")
            size = int(length) if length and length.isdigit() else None
            yield size, response.aiter_raw(chunk_size)
    except httpx.TransportError as exc:
        raise TransferInterrupted(f"the source could not be read: {exc!r}") from exc
