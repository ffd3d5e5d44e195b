"""HTTP middleware that counts and times every request for /metrics."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from taskservice.metrics import Metrics, method_label


def observe_requests(app: FastAPI, metrics: Metrics) -> None:
    """Count and time every HTTP request by method, route template and status."""

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        method = method_label(request.method)
        metrics.http_requests.labels(method, route, str(response.status_code)).inc()
        metrics.http_duration.labels(method, route).observe(time.perf_counter() - started)
        return response
