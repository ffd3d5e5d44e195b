"""Routes about the caller's API key: GET /me."""

from __future__ import annotations

from fastapi import APIRouter

from taskservice.api.auth import AnyAccess
from taskservice.models.keys import OPEN_ACCESS, CallerPublic, Scope

router = APIRouter()


@router.get("/me", response_model=CallerPublic)
async def me(access: AnyAccess) -> CallerPublic:
    """The calling key's name and scopes (any valid key may ask), so that a client
    offers only the actions the key may take."""
    return CallerPublic(
        name=access.name,
        scopes=sorted(access.scopes, key=list(Scope).index),
        open_mode=access is OPEN_ACCESS,
    )
