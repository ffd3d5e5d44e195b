"""Who may call: each request's API key and its scopes, or the loopback-only open mode."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from taskservice.errors import MissingScope, NotAuthenticated
from taskservice.models.keys import OPEN_ACCESS, Principal, Scope
from taskservice.services import keys as key_service
from taskservice.settings import Settings

# Declares the scheme in the OpenAPI document; the header is read below, so that
# a missing or malformed one is a 401 (FastAPI's own answers 403 in some versions).
_bearer = HTTPBearer(auto_error=False, description="An API key: `Bearer tsk_...`.")
_Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def _principal(request: Request, _: _Credentials) -> Principal:
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


def require(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency that answers 401 without a valid key and 403 without `scope`."""

    # _principal called, not depended on: one dependency level less per request.
    async def check(request: Request, credentials: _Credentials) -> Principal:
        principal = await _principal(request, credentials)
        if not principal.allows(scope):
            raise MissingScope(scope.value)
        return principal

    return check


async def _metrics_access(request: Request, credentials: _Credentials) -> Principal:
    settings: Settings = request.app.state.settings
    if settings.metrics_public:
        return OPEN_ACCESS
    return await require(Scope.READ)(request, credentials)


# Any valid key (or the open mode), whatever its scopes.
AnyAccess = Annotated[Principal, Depends(_principal)]
ReadAccess = Annotated[Principal, Depends(require(Scope.READ))]
SubmitAccess = Annotated[Principal, Depends(require(Scope.SUBMIT))]
AdminAccess = Annotated[Principal, Depends(require(Scope.ADMIN))]
MetricsAccess = Annotated[Principal, Depends(_metrics_access)]
