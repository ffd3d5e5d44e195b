"""Completion webhooks: which destinations are allowed, and how a delivery is signed."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from taskservice.errors import InvalidTaskRequest
from taskservice.settings import Settings

SIGNATURE_HEADER = "Taskservice-Signature"


class CallbackRefused(ValueError):
    """A callback URL the deployment does not allow; the message says why."""


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The Taskservice-Signature header: `t=<unix seconds>,v1=<hex HMAC-SHA256
    of "<t>.<body>">`. The time in the signed text lets receivers refuse replays."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(secret: str, body: bytes, header: str, *, tolerance_seconds: float = 300) -> bool:
    """What a receiver does: the signature matches and is recent."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - t) > tolerance_seconds:
        return False
    expected = sign(secret, body, t).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def _host_listed(host: str, allowed: Sequence[str]) -> bool:
    """Whether `host` is allowed by name: exactly, by a `.domain` suffix, or by `*`."""
    host = host.lower().rstrip(".")
    for entry in allowed:
        entry = entry.lower().rstrip(".")
        if entry == "*" or entry == host or (entry.startswith(".") and host.endswith(entry)):
            return True
    return False


def _exactly_listed(value: str, allowed: Sequence[str]) -> bool:
    return value.lower().rstrip(".") in {e.lower().rstrip(".") for e in allowed}


def _internal(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_unspecified


def check_url(url: str, allowed: Sequence[str], *, signed: bool = True) -> str:
    """The URL's host if the URL may be called back at all (signing key set,
    scheme, host allowed); else CallbackRefused. Addresses are checked by
    `check_addresses`."""
    if not signed:
        raise CallbackRefused(
            "callbacks are disabled on this deployment (TASKSERVICE_CALLBACK_SECRET is not set)"
        )
    if not allowed:
        raise CallbackRefused(
            "callbacks are disabled on this deployment "
            "(TASKSERVICE_CALLBACK_ALLOWED_HOSTS is empty)"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise CallbackRefused(f"not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CallbackRefused("callback_url must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise CallbackRefused("callback_url may not carry credentials")
    if not _host_listed(parts.hostname, allowed):
        raise CallbackRefused(
            f"host {parts.hostname!r} is not in TASKSERVICE_CALLBACK_ALLOWED_HOSTS"
        )
    return parts.hostname


async def check_addresses(host: str, port: int | None, allowed: Sequence[str]) -> None:
    """Refuse a host that resolves to a private, loopback or link-local address,
    unless the host's exact name or that address is listed."""
    if _exactly_listed(host, allowed):
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port or 443, type=socket.SOCK_STREAM
        )
    except OSError as exc:
        raise CallbackRefused(f"cannot resolve {host!r}: {exc}") from exc
    for info in infos:
        address = str(info[4][0])
        if _internal(address) and not _exactly_listed(address, allowed):
            raise CallbackRefused(
                f"{host!r} resolves to the internal address {address}; list the address "
                "or the exact name in TASKSERVICE_CALLBACK_ALLOWED_HOSTS to allow it"
            )


async def check_callback_url(url: str, allowed: Sequence[str], *, signed: bool = True) -> None:
    """The whole check, at submission and again before each delivery."""
    host = check_url(url, allowed, signed=signed)
    await check_addresses(host, urlsplit(url).port, allowed)


@dataclass(frozen=True)
class CallbackRules:
    """What a deployment allows; the default allows nothing."""

    allowed_hosts: tuple[str, ...] = ()
    signed: bool = False
    # Checked URLs of one request: a batch of 1,000 tasks resolves its host once.
    _seen: dict[str, None] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> CallbackRules:
        return cls(
            allowed_hosts=tuple(settings.callback_allowed_hosts),
            signed=settings.callback_secret is not None,
        )

    async def check(self, url: str, loc: Sequence[str | int] = ("callback_url",)) -> None:
        """A 422 (InvalidTaskRequest at `loc` in the body) if `url` is refused."""
        if url in self._seen:
            return
        try:
            await check_callback_url(url, self.allowed_hosts, signed=self.signed)
        except CallbackRefused as exc:
            error: dict[str, Any] = {
                "loc": ["body", *loc],
                "msg": str(exc),
                "type": "callback_refused",
            }
            raise InvalidTaskRequest([error]) from exc
        self._seen[url] = None
