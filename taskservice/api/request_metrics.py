"""ASGI middleware that counts and times every request for /metrics, and answers
an unhandled exception with a counted JSON 500 (its traceback goes to the log)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable

from fastapi import FastAPI
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskservice.api.limits import error_response
from taskservice.api.openapi import template_pattern
from taskservice.metrics import Metrics, method_label

logger = logging.getLogger(__name__)


class ObserveRequests:
    """Count and time every HTTP request by method, route template and status.

    Outermost of the service's middleware, so answers given by the limits (413,
    408, 503) count too; and an exception no handler took is answered here,
    rather than by Starlette's plain-text 500 outside every counter."""

    def __init__(
        self, app: ASGIApp, *, metrics: Metrics, templates: Callable[[], Iterable[str]]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = templates
        self._patterns: list[tuple[re.Pattern[str], str]] | None = None
        # Each label set's series, looked up once: prometheus_client's labels()
        # takes a lock and builds its key on every call. Bounded as the labels are.
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except Exception:
            logger.exception("unhandled error answering %s %s", scope["method"], scope["path"])
            if status is not None:  # too late for an answer: the server drops the connection
                self._observe(scope, 500, started)
                raise
            # The same answer as api.errors' handler for Exception, which runs
            # only for what escapes this middleware.
            response = error_response(500, "internal error", "internal")
            await response(scope, receive, send_observed)
        if status is not None:
            self._observe(scope, status, started)

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        key = (method_label(scope["method"]), self._route(scope), status)
        series = self._series.get(key)
        if series is None:
            method, route, _ = key
            series = self._series[key] = (
                self.metrics.http_requests.labels(method, route, str(status)),
                self.metrics.http_duration.labels(method, route),
            )
        requests, duration = series
        requests.inc()
        duration.observe(time.perf_counter() - started)

    def _route(self, scope: Scope) -> str:
        """The route template: the router leaves it in the scope; for a request
        refused before routing (413, 408, 503), the template its path matches."""
        if "route" in scope:
            return str(getattr(scope["route"], "path", "unmatched"))
        if self._patterns is None:
            self._patterns = [(template_pattern(t), t) for t in self.templates()]
        path = scope["path"]
        if any(path == template for _, template in self._patterns):  # /tasks/batch
            return str(path)
        return next((t for pattern, t in self._patterns if pattern.match(path)), "unmatched")


def observe_requests(app: FastAPI, metrics: Metrics) -> None:
    """Count every request of `app`; call after every other middleware is added."""
    app.add_middleware(
        ObserveRequests, metrics=metrics, templates=lambda: app.openapi()["paths"].keys()
    )
