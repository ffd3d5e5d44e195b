"""files.transfer's http(s) source: one streamed GET of an allowed URL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx

from taskservice.settings import Settings
from taskservice.worker.library import outbound
from taskservice.worker.library.errors import TransferInterrupted, TransferRefused

# Per read, connect and write; a slow but steady download is not cut short.
TIMEOUT_SECONDS = 30.0


@contextlib.asynccontextmanager
async def open_http(
    url: str, settings: Settings, chunk_size: int
) -> AsyncIterator[tuple[int | None, AsyncIterator[bytes]]]:
    """The size (Content-Length, if sent) and the bytes of `url`, through the
    library's outbound client (each connection checked against the allowlist
    at connect time, against DNS rebinding). Redirects are not followed.
    Connection errors, timeouts, 429 and 5xx are TransferInterrupted (retried);
    a refused destination and other answers TransferRefused."""
    try:
        async with (
            outbound.client(settings, timeout=TIMEOUT_SECONDS) as client,
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
    except outbound.DestinationRefused as exc:
        raise TransferRefused(f"source refused: {exc}") from exc
    except httpx.TransportError as exc:
        raise TransferInterrupted(f"the source could not be read: {exc!r}") from exc
