"""Completion webhooks: which destinations are allowed, and how a delivery is signed."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from taskservice.services.destinations import DestinationRefused, check_addresses, check_http_url

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


_SETTING = "TASKSERVICE_CALLBACK_ALLOWED_HOSTS"


def check_url(url: str, allowed: Sequence[str], *, signed: bool = True) -> str:
    """The URL's host if the URL may be called back at all (signing key set,
    scheme, host allowed); else CallbackRefused. Addresses are checked by
    `check_callback_url`."""
    if not signed:
        raise CallbackRefused(
            "callbacks are disabled on this deployment (TASKSERVICE_CALLBACK_SECRET is not set)"
        )
    if not allowed:
        raise CallbackRefused(f"callbacks are disabled on this deployment ({_SETTING} is empty)")
    try:
        return check_http_url(url, allowed, setting=_SETTING, field="callback_url")
    except DestinationRefused as exc:
        raise CallbackRefused(str(exc)) from exc


async def check_callback_url(url: str, allowed: Sequence[str], *, signed: bool = True) -> None:
    """The whole check, at submission and again before each delivery."""
    host = check_url(url, allowed, signed=signed)
    try:
        await check_addresses(host, urlsplit(url).port, allowed, setting=_SETTING)
    except DestinationRefused as exc:
        raise CallbackRefused(str(exc)) from exc
