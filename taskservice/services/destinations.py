"""Outbound destinations: which hosts a deployment lets the service call, checked
by name before a call and by resolved address against DNS rebinding."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit


class DestinationRefused(ValueError):
    """A URL or host the deployment does not allow; the message says why."""


def host_listed(host: str, allowed: Sequence[str]) -> bool:
    """Whether `host` is allowed by name: exactly, by a `.domain` suffix, or by `*`."""
    host = host.lower().rstrip(".")
    for entry in allowed:
        entry = entry.lower().rstrip(".")
        if entry == "*" or entry == host or (entry.startswith(".") and host.endswith(entry)):
            return True
    return False


def exactly_listed(value: str, allowed: Sequence[str]) -> bool:
    return value.lower().rstrip(".") in {e.lower().rstrip(".") for e in allowed}


# IPv6 prefix of NAT64 (RFC 6052): the last 32 bits are an IPv4 address.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_internal(address: str) -> bool:
    """Anything but a global unicast address: private, loopback, link-local,
    unspecified, shared (100.64.0.0/10, carrier NAT), reserved or multicast;
    an IPv6 address that carries an IPv4 one (mapped, 6to4, NAT64) is judged
    by that IPv4 address. What `*` never reaches."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_internal(str(embedded))
    return not ip.is_global or ip.is_multicast


def check_http_url(url: str, allowed: Sequence[str], *, setting: str, field: str) -> str:
    """The URL's host if it is an http(s) URL without credentials whose host
    `allowed` lists (`setting` and `field` name them in the message); else
    DestinationRefused. Addresses are checked by `check_addresses`."""
    if not allowed:
        raise DestinationRefused(
            f"outbound calls are disabled on this deployment ({setting} is empty)"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise DestinationRefused(f"not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DestinationRefused(f"{field} must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise DestinationRefused(f"{field} may not carry credentials")
    if not host_listed(parts.hostname, allowed):
        raise DestinationRefused(f"host {parts.hostname!r} is not in {setting}")
    return parts.hostname


async def check_addresses(
    host: str, port: int | None, allowed: Sequence[str], *, setting: str
) -> list[str]:
    """The addresses `host` resolves to, refusing an internal one (is_internal)
    unless the host's exact name or that address is listed (an exactly listed
    name is not resolved here: [])."""
    if exactly_listed(host, allowed):
        return []
    addresses = await _resolve(host, port)
    _refuse_internal(host, addresses, allowed, setting=setting)
    return addresses


async def connectable_addresses(
    host: str, port: int | None, allowed: Sequence[str], *, setting: str
) -> list[str]:
    """The addresses a connection to `host` may use, for a client that connects
    to what was checked (so that a second DNS answer cannot point elsewhere):
    the host must be listed by name, and an internal address (is_internal)
    needs the exact name or that address listed."""
    if not host_listed(host, allowed):
        raise DestinationRefused(f"host {host!r} is not in {setting}")
    addresses = await _resolve(host, port)
    if not exactly_listed(host, allowed):
        _refuse_internal(host, addresses, allowed, setting=setting)
    return addresses


async def _resolve(host: str, port: int | None) -> list[str]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port or 443, type=socket.SOCK_STREAM
        )
    except OSError as exc:
        raise DestinationRefused(f"cannot resolve {host!r}: {exc}") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _refuse_internal(
    host: str, addresses: Sequence[str], allowed: Sequence[str], *, setting: str
) -> None:
    for address in addresses:
        if is_internal(address) and not exactly_listed(address, allowed):
            raise DestinationRefused(
                f"{host!r} resolves to the internal address {address}; list the address "
                f"or the exact name in {setting} to allow it"
            )


async def check_destination(url: str, allowed: Sequence[str], *, setting: str, field: str) -> None:
    """The whole check of an outbound URL: by name, then by resolved address."""
    host = check_http_url(url, allowed, setting=setting, field=field)
    await check_addresses(host, urlsplit(url).port, allowed, setting=setting)
