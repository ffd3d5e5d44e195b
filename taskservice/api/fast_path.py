"""Routes with a fast path: a lean handler answers the common request, FastAPI's the rest."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

# Answers a request, or returns None to leave it to FastAPI's own handler.
FastHandler = Callable[[Request], Awaitable[Response | None]]


def fast_path(handler: FastHandler) -> type[APIRoute]:
    """A route class (for `add_api_route(route_class_override=...)`) whose requests
    go to `handler` first.

    FastAPI's handler solves the endpoint's parameters and dependencies through
    its generic machinery, about a fifth of the API's CPU on a busy read (py-spy,
    issue 10). `handler` does the same work by hand for the requests it knows
    (well-formed ones) and leaves every other to FastAPI, so that validation
    errors keep FastAPI's exact answers; the endpoint's signature still makes
    the OpenAPI document. Exceptions it raises go to the app's handlers, as an
    endpoint's would."""

    class FastPathRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            full = super().get_route_handler()

            async def answer(request: Request) -> Response:
                response = await handler(request)
                return response if response is not None else await full(request)

            return answer

    return FastPathRoute
