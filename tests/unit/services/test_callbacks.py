"""Signing and destination rules of completion webhooks (no network beyond name lookups)."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest

from taskservice.services.callbacks import (
    CallbackRefused,
    check_callback_url,
    check_url,
    sign,
    verify,
)


def test_the_signature_is_an_hmac_of_time_and_body() -> None:
    header = sign("k", b'{"id":1}', timestamp=1700000000)
    expected = hmac.new(b"k", b'1700000000.{"id":1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_verify_refuses_other_keys_bodies_and_old_signatures() -> None:
    body = b'{"id":1}'
    assert verify("k", body, sign("k", body))
    assert not verify("other", body, sign("k", body))
    assert not verify("k", b'{"id":2}', sign("k", body))
    assert not verify("k", body, sign("k", body, timestamp=int(time.time()) - 3600))
    assert not verify("k", body, "garbage")


@pytest.mark.parametrize(
    ("url", "allowed", "host"),
    [
        ("https://hooks.example.com/x", ["hooks.example.com"], "hooks.example.com"),
        ("https://a.example.com/x", [".example.com"], "a.example.com"),
        ("http://HOOKS.example.com./x", ["hooks.example.com"], "hooks.example.com."),
        ("https://anything.org/x", ["*"], "anything.org"),
    ],
)
def test_allowed_hosts(url: str, allowed: list[str], host: str) -> None:
    assert check_url(url, allowed) == host.lower()


@pytest.mark.parametrize(
    ("url", "allowed", "reason"),
    [
        ("https://evil.com/x", ["hooks.example.com"], "not in"),
        ("https://example.com.evil.com/", [".example.com"], "not in"),
        ("https://x.example.com/", [], "disabled"),
        ("file:///etc/passwd", ["*"], "http"),
        ("http://u:p@x.example.com/", ["*"], "credentials"),
        ("http://x.example.com:99999/", ["*"], "valid URL"),
    ],
)
def test_refused_urls(url: str, allowed: list[str], reason: str) -> None:
    with pytest.raises(CallbackRefused, match=reason):
        check_url(url, allowed)


def test_no_signing_key_means_no_callbacks() -> None:
    with pytest.raises(CallbackRefused, match="TASKSERVICE_CALLBACK_SECRET"):
        check_url("https://x.example.com/", ["*"], signed=False)


async def test_internal_addresses_need_to_be_listed_exactly() -> None:
    for url in (
        "http://127.0.0.1/",
        "http://[::1]/",
        "http://169.254.169.254/",
        "http://10.1.2.3/",
    ):
        with pytest.raises(CallbackRefused, match="internal address"):
            await check_callback_url(url, ["*"])
    await check_callback_url("http://127.0.0.1:8080/", ["127.0.0.1"])
    await check_callback_url("http://localhost/", ["localhost"])
    with pytest.raises(CallbackRefused, match="internal address"):
        await check_callback_url("http://localhost/", [".localhost", "*"])
