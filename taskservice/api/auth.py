"""Who may call: each request's API key and its scopes, or the loopback-only open mode."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase

from taskservice.errors import MissingScope, NotAuthenticated
from taskservice.models.keys import OPEN_ACCESS, Principal, Scope
from taskservice.services import keys as key_service
from taskservice.settings import Settings

# How the OpenAPI document names and describes the scheme (FastAPI's HTTPBearer's).
_SCHEME_NAME = "HTTPBearer"
_SCHEME = HTTPBearerModel(description="An API key: `Bearer tsk_...`.")


async def authenticate(request: Request) -> Principal:
    """The principal of the request's key (or the open mode), else NotAuthenticated.

    The header is read here rather than by FastAPI's HTTPBearer, so that a
    missing or malformed one is a 401 (FastAPI's own answers 403 in some versions)."""
    state = request.app.state
    settings: Settings = state.settings
    cache: key_service.KeyCache = state.key_cache
    header = request.headers.get("authorization")
    if header is None:
        # Open while no key exists, on loopback only (see KeyCache for how soon
        # the first key closes it).
        if key_service.is_loopback(settings.host) and not await key_service.keys_exist(
            pool=state.pool, cache=cache
        ):
            return OPEN_ACCESS
        raise NotAuthenticated("this call needs an API key: send `Authorization: Bearer <key>`")
    scheme, _sep, key = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise NotAuthenticated("malformed Authorization header: expected `Bearer <key>`")
    principal = await key_service.authenticate(pool=state.pool, key=key.strip(), cache=cache)
    if principal is None:
        raise NotAuthenticated("unknown or revoked API key")
    return principal


async def authorize(request: Request, scope: Scope | None) -> Principal:
    """The request's principal: 401 without a valid key, 403 without `scope`
    (None: any valid key, whatever its scopes)."""
    principal = await authenticate(request)
    if scope is not None and not principal.allows(scope):
        raise MissingScope(scope.value)
    return principal


class KeyAccess(SecurityBase):
    """A dependency that answers 401 without a valid key and 403 without `scope`.

    A SecurityBase, so that FastAPI documents the bearer scheme on each route
    that uses it, the way it would for its own HTTPBearer; one dependency, not
    two: FastAPI's work per dependency is paid on every request (py-spy, issue 10)."""

    def __init__(self, scope: Scope | None, *, metrics: bool = False) -> None:
        self.model = _SCHEME
        self.scheme_name = _SCHEME_NAME
        self.scope = scope
        # /metrics: open to all when TASKSERVICE_METRICS_PUBLIC says so.
        self.metrics = metrics

    async def __call__(self, request: Request) -> Principal:
        if self.metrics:
            settings: Settings = request.app.state.settings
            if settings.metrics_public:
                return OPEN_ACCESS
        return await authorize(request, self.scope)


# Any valid key (or the open mode), whatever its scopes.
AnyAccess = Annotated[Principal, Depends(KeyAccess(None))]
ReadAccess = Annotated[Principal, Depends(KeyAccess(Scope.READ))]
SubmitAccess = Annotated[Principal, Depends(KeyAccess(Scope.SUBMIT))]
AdminAccess = Annotated[Principal, Depends(KeyAccess(Scope.ADMIN))]
MetricsAccess = Annotated[Principal, Depends(KeyAccess(Scope.READ, metrics=True))]
