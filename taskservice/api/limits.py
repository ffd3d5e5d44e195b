"""ASGI middleware that bounds what one client can hold: the size of a request body
and the time to send it, and the number of requests in progress at once."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from urllib.parse import parse_qs

from fastapi import FastAPI
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskservice.settings import Settings

# Probes and scrapes are answered even at the limit: an API that is busy is
# not dead, and its metrics matter most then.
UNLIMITED_PATHS = ("/health", "/metrics")
# Event streams and long polls (GET /tasks/{id}?wait=) wait by design, on the one
# shared listener rather than a connection each: counted, 100 of them would shut
# the API. Their number is bounded by TASKSERVICE_MAX_CONNECTIONS instead.
_STREAM = re.compile(r"/(tasks/[^/]+/)?events")
_WAITABLE = re.compile(r"/tasks/[^/]+")


def waits_by_design(scope: Scope) -> bool:
    """Whether the request is an event stream or a long poll."""
    path: str = scope["path"]
    if not path.endswith("events") and b"wait" not in scope.get("query_string", b""):
        return False  # most requests: no regular expression, no query parsing
    if _STREAM.fullmatch(path):
        return True
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return bool(_WAITABLE.fullmatch(path)) and "wait" in query


def error_response(
    status_code: int, msg: str, kind: str, *, loc: list[str] | None = None, **headers: str
) -> JSONResponse:
    """An error in FastAPI's validation shape, {"detail": [{loc, msg, type}]}."""
    return JSONResponse(
        status_code=status_code,
        content={"detail": [{"loc": loc or [], "msg": msg, "type": kind}]},
        headers={name.replace("_", "-"): value for name, value in headers.items()},
    )


class RequestLimits:
    """Bound what one request can hold, in one middleware (each layer costs every
    request a hop):

    - its body is read whole before the app runs, refusing one over `max_bytes`
      (413, as soon as Content-Length says so, else once the bytes received pass
      it: chunked or lying bodies) or not received within `timeout_seconds` of
      the request's start (408); either way the connection is closed after the
      answer, since the rest of the body is not read. Reading first means a slow
      client holds a coroutine and at most `max_bytes`, not a request in
      progress. A request that declares no body (no Content-Length or 0, no
      Transfer-Encoding) has none to wait for: it goes straight on.
    - at most `max_requests` are in progress: one more is answered at once with
      503 and Retry-After, rather than queued (where waiting would grow every
      client's latency without bound). Paths starting with one of `exempt`
      (probes, metrics), event streams and long polls are neither counted nor
      refused."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        timeout_seconds: float,
        max_requests: int,
        retry_after_seconds: int = 1,
        exempt: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds
        self.max_requests = max_requests
        self.retry_after_seconds = retry_after_seconds
        self.exempt = tuple(exempt)
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, chunked = _body_headers(scope)
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large()(scope, receive, send)
            return
        if declared not in ("", "0") or chunked:
            try:
                async with asyncio.timeout(self.timeout_seconds):
                    body, complete = await self._read(receive)
            except TimeoutError:
                response = error_response(
                    408,
                    f"the body did not arrive within {self.timeout_seconds:g} s",
                    "body_timeout",
                    loc=["body"],
                    connection="close",
                )
                await response(scope, receive, send)
                return
            if body is None:
                await self._too_large()(scope, receive, send)
                return
            if not complete:  # the client went away mid-body: nobody to answer
                return
            receive = _replay(body, receive)
        if scope["path"].startswith(self.exempt) or waits_by_design(scope):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_requests:
            response = error_response(
                503,
                f"the API has {self.max_requests} requests in progress, its limit "
                f"(TASKSERVICE_MAX_REQUESTS_IN_FLIGHT); retry after "
                f"{self.retry_after_seconds} s",
                "overloaded",
                retry_after=str(self.retry_after_seconds),
            )
            await response(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    def _too_large(self) -> JSONResponse:
        return error_response(
            413,
            f"the body is larger than {self.max_bytes} bytes (TASKSERVICE_MAX_BODY_BYTES)",
            "body_too_large",
            loc=["body"],
            connection="close",
        )

    async def _read(self, receive: Receive) -> tuple[bytes | None, bool]:
        """The body (None: over the limit) and whether it arrived complete."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), False
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None, True
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), True


def _body_headers(scope: Scope) -> tuple[str, bool]:
    """Content-Length ("" if absent) and whether a Transfer-Encoding is given, in
    one pass over the raw headers (names are lower case in ASGI): most requests
    have no body, and building starlette's Headers for them cost more than this."""
    declared: str | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            if declared is None:  # the first, as Headers.get gives
                declared = value.decode("latin-1")
        elif name == b"transfer-encoding":
            chunked = True
    return declared or "", chunked


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives `body` once, then whatever the server sends next."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def limit_requests(app: FastAPI, settings: Settings) -> None:
    """Bound body size and time, then requests in progress, on `app`."""
    app.add_middleware(
        RequestLimits,
        max_bytes=settings.max_body_bytes,
        timeout_seconds=settings.body_timeout_seconds,
        max_requests=settings.max_requests_in_flight,
        exempt=UNLIMITED_PATHS,
    )
