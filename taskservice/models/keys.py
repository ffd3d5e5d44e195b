"""API keys: their scopes, how they are listed, and who a request acts for."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field


class Scope(enum.StrEnum):
    """What a key may do. `admin` includes the other two."""

    READ = "read"  # get, list, task types, queues, schedules, metrics
    SUBMIT = "submit"  # create tasks; cancel and retry its own
    ADMIN = "admin"  # every task of every key, schedules


class ApiKeyPublic(BaseModel):
    """A key as `taskservice keys list` shows it: never its secret."""

    name: str
    prefix: str
    scopes: list[Scope]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class CallerPublic(BaseModel):
    """Who GET /me says the caller is: what a client needs to know which actions to offer."""

    name: str
    scopes: list[Scope]
    open_mode: bool = Field(description="No key needed: no key exists and the API is on loopback.")


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: an API key, or anyone (the service's open mode,
    allowed only while no key exists and the API listens on loopback)."""

    key_id: int | None
    name: str
    scopes: frozenset[Scope]

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes or Scope.ADMIN in self.scopes

    @property
    def owner_filter(self) -> int | None:
        """The key whose tasks this principal may see: None for admin (all)."""
        return None if Scope.ADMIN in self.scopes else self.key_id


OPEN_ACCESS = Principal(key_id=None, name="(open mode)", scopes=frozenset(Scope))
