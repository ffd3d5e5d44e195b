"""A fast-path route answers what its handler knows and leaves the rest to FastAPI,
with the same exception handlers and the same OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, FastAPI, Path, Request, Response
from fastapi.responses import JSONResponse

from taskservice.api.fast_path import fast_path


class Refused(Exception):
    pass


async def _fast(request: Request) -> Response | None:
    raw: str = request.path_params["item_id"]
    if raw == "13":
        raise Refused
    if not raw.isdigit() or request.scope["query_string"]:
        return None
    return Response(f'{{"id":{raw},"by":"fast"}}', media_type="application/json")


async def read_item(item_id: Annotated[int, Path(ge=1)], verbose: bool = False) -> dict[str, Any]:
    """One item."""
    return {"id": item_id, "by": "fastapi"}


def _app(route_class: type | None) -> FastAPI:
    app = FastAPI()
    router = APIRouter()
    options: dict[str, Any] = {"route_class_override": route_class} if route_class else {}
    router.add_api_route("/items/{item_id}", read_item, methods=["GET"], **options)
    app.include_router(router)

    @app.exception_handler(Refused)
    async def refused(_: Request, __: Refused) -> JSONResponse:
        return JSONResponse({"detail": "refused"}, status_code=403)

    return app


async def _get(app: FastAPI, url: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(url)


async def test_the_handler_answers_what_it_knows() -> None:
    response = await _get(_app(fast_path(_fast)), "/items/5")
    assert response.status_code == 200
    assert response.json() == {"id": 5, "by": "fast"}


async def test_the_rest_goes_to_fastapi_and_its_validation() -> None:
    app = _app(fast_path(_fast))
    assert (await _get(app, "/items/5?verbose=true")).json() == {"id": 5, "by": "fastapi"}
    response = await _get(app, "/items/x")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "item_id"]


async def test_its_exceptions_reach_the_apps_handlers() -> None:
    response = await _get(_app(fast_path(_fast)), "/items/13")
    assert response.status_code == 403
    assert response.json() == {"detail": "refused"}


def test_the_document_is_the_endpoints() -> None:
    assert _app(fast_path(_fast)).openapi() == _app(None).openapi()
