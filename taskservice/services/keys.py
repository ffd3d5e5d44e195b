"""API keys: create, list and revoke them; find the key a request presents."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from taskservice.errors import ApiKeyNameTaken, ApiKeyNotFound, ConfigurationError, UniqueViolation
from taskservice.models.keys import ApiKeyPublic, Principal, Scope
from taskservice.store import asyncpg_driver as db

# `tsk_<prefix>_<secret>`: 8 characters to tell keys apart, 256 random bits.
_KEY = re.compile(r"tsk_([a-z0-9]{8})_([A-Za-z0-9_-]{43})")
_PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
# last_used_at is written at most this often per key, not on every request.
_TOUCH_EVERY = dt.timedelta(seconds=60)


def _hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_key() -> tuple[str, str]:
    """A fresh key and its public prefix."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(8))
    return f"tsk_{prefix}_{secrets.token_urlsafe(32)}", prefix


async def create_key(
    *, pool: db.Pool, name: str, scopes: Iterable[Scope]
) -> tuple[ApiKeyPublic, str]:
    """Store a new key (hashed); return it as listed and, once, its secret."""
    key, prefix = new_key()
    try:
        row = await db.fetchrow(
            pool,
            "create_api_key",
            name=name,
            prefix=prefix,
            secret_hash=_hash(key),
            scopes=sorted({Scope(s).value for s in scopes}),
        )
    except UniqueViolation as exc:
        raise ApiKeyNameTaken(name) from exc
    return ApiKeyPublic.model_validate(dict(row or {})), key


async def list_keys(*, pool: db.Pool) -> list[ApiKeyPublic]:
    """Every key, revoked ones included, by name."""
    return [ApiKeyPublic.model_validate(dict(r)) for r in await db.fetch(pool, "list_api_keys")]


async def revoke_key(*, pool: db.Pool, name: str) -> ApiKeyPublic:
    """Revoke a key: every API replica refuses it as soon as the change's
    notification reaches it (see KeyCache)."""
    row = await db.fetchrow(pool, "revoke_api_key", name=name)
    if row is None:
        raise ApiKeyNotFound(name)
    return ApiKeyPublic.model_validate(dict(row))


@dataclass
class _Known:
    principal: Principal
    until: float  # on KeyCache's clock
    last_used: dt.datetime | None


class KeyCache:
    """What one API process learned about API keys, so that most requests
    authenticate without a query: each valid key's principal (by the key's
    hash), and that no key exists (the open mode).

    Every change to taskservice.api_keys is notified (the api_keys trigger)
    and clears it: a revoked key, or the first key created, counts from the
    request after its notification arrives. It is used only while `trusted()`
    (the process's listener is connected: notifications are arriving; the
    listener clears it again when it reconnects), and an entry is kept at most
    `ttl_seconds` in any case (0: nothing is kept). That a key exists is kept
    for good: keys are revoked, never deleted."""

    def __init__(
        self,
        *,
        ttl_seconds: float,
        trusted: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self._trusted = trusted
        self._clock = clock
        self._known: dict[bytes, _Known] = {}
        self._no_keys_until: float | None = None
        self.keys_seen = False
        # Bumped by every invalidation: an answer read from the database before
        # an invalidation is not kept after it.
        self.generation = 0

    def invalidate(self, _event: object = None) -> None:
        """Forget everything but `keys_seen` (a listener watch callback)."""
        self.generation += 1
        self._known.clear()
        self._no_keys_until = None

    def _usable(self) -> bool:
        return self.ttl_seconds > 0 and self._trusted()

    def known(self, digest: bytes) -> _Known | None:
        entry = self._known.get(digest) if self._usable() else None
        if entry is None or entry.until <= self._clock():
            return None
        return entry

    def remember(
        self, digest: bytes, principal: Principal, last_used: dt.datetime | None, generation: int
    ) -> None:
        if generation == self.generation and self._usable():
            self._known[digest] = _Known(principal, self._clock() + self.ttl_seconds, last_used)

    def no_keys(self) -> bool:
        """Whether no key existed when last asked, within the TTL."""
        until = self._no_keys_until
        return until is not None and self._usable() and until > self._clock()

    def remember_no_keys(self, generation: int) -> None:
        if generation == self.generation and self._usable():
            self._no_keys_until = self._clock() + self.ttl_seconds


async def keys_exist(*, pool: db.Pool, cache: KeyCache | None = None) -> bool:
    """Whether any key was ever created (revoked ones count)."""
    if cache is not None:
        if cache.keys_seen:
            return True
        if cache.no_keys():
            return False
    generation = cache.generation if cache is not None else 0
    exist = bool(await db.fetchval(pool, "any_api_keys"))
    if cache is not None:
        if exist:
            cache.keys_seen = True
        else:
            cache.remember_no_keys(generation)
    return exist


async def authenticate(
    *, pool: db.Pool, key: str, cache: KeyCache | None = None
) -> Principal | None:
    """The principal of a presented key; None if it is malformed, unknown or revoked.

    One indexed lookup by prefix, then a constant-time comparison of hashes;
    with a `cache`, a key seen lately needs neither (unknown keys are never
    kept: made-up keys cannot fill it)."""
    match = _KEY.fullmatch(key)
    if match is None:
        return None
    digest = _hash(key)
    now = dt.datetime.now(dt.UTC)
    known = cache.known(digest) if cache is not None else None
    if known is not None:
        if known.last_used is None or now - known.last_used > _TOUCH_EVERY:
            await db.execute(pool, "touch_api_key", key_id=known.principal.key_id)
            known.last_used = now
        return known.principal
    generation = cache.generation if cache is not None else 0
    row = await db.fetchrow(pool, "find_api_key", prefix=match.group(1))
    if row is None or not hmac.compare_digest(bytes(row["secret_hash"]), digest):
        return None
    last_used: dt.datetime | None = row["last_used_at"]
    if last_used is None or now - last_used > _TOUCH_EVERY:
        await db.execute(pool, "touch_api_key", key_id=row["id"])
        last_used = now
    principal = Principal(
        key_id=row["id"], name=row["name"], scopes=frozenset(Scope(s) for s in row["scopes"])
    )
    if cache is not None:
        cache.remember(digest, principal, last_used, generation)
    return principal


@functools.cache  # asked on every request without a key: parse each host once
def is_loopback(host: str) -> bool:
    """Whether `host` (what the API listens on) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


BOOTSTRAP_KEY_NAME = "bootstrap-admin"


async def import_bootstrap_key(*, pool: db.Pool, key: str) -> bool:
    """Store `key` (made by `taskservice keys generate`) as the admin key
    `bootstrap-admin`, unless a key of that name exists; return whether it was
    stored. How a container deployment gets its first key from a Secret."""
    match = _KEY.fullmatch(key)
    if match is None:
        raise ConfigurationError(
            "TASKSERVICE_BOOTSTRAP_API_KEY is not a key: make one with `taskservice keys generate`"
        )
    try:
        await db.fetchrow(
            pool,
            "create_api_key",
            name=BOOTSTRAP_KEY_NAME,
            prefix=match.group(1),
            secret_hash=_hash(key),
            scopes=[Scope.ADMIN.value],
        )
    except UniqueViolation:
        return False
    return True


async def prepare_access(*, pool: db.Pool, host: str, bootstrap_key: str | None) -> None:
    """Before serving: store the bootstrap key if one is configured, then refuse
    to serve without keys on an address other machines can reach."""
    if bootstrap_key:
        await import_bootstrap_key(pool=pool, key=bootstrap_key)
    if not is_loopback(host) and not await keys_exist(pool=pool):
        raise ConfigurationError(
            f"refusing to listen on {host} with no API key: anyone who can reach it could "
            "run tasks. Create one first (taskservice keys create NAME --scopes admin, or "
            "TASKSERVICE_BOOTSTRAP_API_KEY from `taskservice keys generate`), or listen on "
            "127.0.0.1"
        )
