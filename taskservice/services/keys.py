"""API keys: create, list and revoke them; find the key a request presents."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Iterable

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
    """Revoke a key: every API replica refuses it from its next request on."""
    row = await db.fetchrow(pool, "revoke_api_key", name=name)
    if row is None:
        raise ApiKeyNotFound(name)
    return ApiKeyPublic.model_validate(dict(row))


async def keys_exist(*, pool: db.Pool) -> bool:
    """Whether any key was ever created (revoked ones count)."""
    return bool(await db.fetchval(pool, "any_api_keys"))


async def authenticate(*, pool: db.Pool, key: str) -> Principal | None:
    """The principal of a presented key; None if it is malformed, unknown or revoked.

    One indexed lookup by prefix, then a constant-time comparison of hashes."""
    match = _KEY.fullmatch(key)
    if match is None:
        return None
    row = await db.fetchrow(pool, "find_api_key", prefix=match.group(1))
    if row is None or not hmac.compare_digest(bytes(row["secret_hash"]), _hash(key)):
        return None
    last_used: dt.datetime | None = row["last_used_at"]
    if last_used is None or dt.datetime.now(dt.UTC) - last_used > _TOUCH_EVERY:
        await db.execute(pool, "touch_api_key", key_id=row["id"])
    return Principal(
        key_id=row["id"], name=row["name"], scopes=frozenset(Scope(s) for s in row["scopes"])
    )


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
