"""http.request's pure parts: Retry-After, credentials, params."""

from __future__ import annotations

import datetime

import pydantic
import pytest
from pydantic import SecretStr

from taskservice.settings import Settings
from taskservice.worker.library.http_request import (
    Credential,
    HttpRequestParams,
    retry_after_seconds,
)

NOW = datetime.datetime(2026, 11, 30, 12, 0, 0, tzinfo=datetime.UTC)


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert retry_after_seconds("120", NOW) == 120
    assert retry_after_seconds("Mon, 30 Nov 2026 12:00:30 GMT", NOW) == 30
    assert retry_after_seconds("Mon, 30 Nov 2026 11:00:00 GMT", NOW) == 0  # past: at once
    assert retry_after_seconds("soon", NOW) is None
    assert retry_after_seconds(None, NOW) is None


def _credential(scheme: str, secret: str = "user:pw") -> Credential:
    settings = Settings.model_construct(secrets={"api": SecretStr(secret)})
    params = HttpRequestParams.model_validate(
        {"url": "https://x.example/", "auth": "secret:api", "auth_scheme": scheme}
    )
    credential = Credential.of(params, settings)
    assert credential is not None
    return credential


def test_credential_schemes() -> None:
    assert _credential("Bearer").value == "Bearer user:pw"
    assert _credential("Basic").value == "Basic dXNlcjpwdw=="
    header = _credential("header:X-Api-Key")
    assert (header.header, header.value) == ("X-Api-Key", "user:pw")


def test_redaction_covers_the_secret_and_what_was_sent() -> None:
    basic = _credential("Basic")
    assert basic.redact("got Basic dXNlcjpwdw== and user:pw") == "got [redacted] and [redacted]"


@pytest.mark.parametrize(
    "params",
    [
        {"url": "https://x.example/", "json": {}, "body": "x"},
        {"url": "https://x.example/", "auth": "stripe"},
        {"url": "https://x.example/", "auth_scheme": "Digest"},
        {"url": "https://x.example/", "headers": {"Bad Name": "x"}},
        {"url": "https://x.example/", "headers": {"X-A": "a\r\nInjected: 1"}},
        {"url": "https://x.example/", "method": "CONNECT"},
    ],
)
def test_bad_params_are_refused(params: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        HttpRequestParams.model_validate(params)


def test_json_null_is_a_body_but_absent_json_is_none() -> None:
    assert (
        "json_body"
        in HttpRequestParams.model_validate(
            {"url": "https://x.example/", "json": None}
        ).model_fields_set
    )
    assert (
        "json_body"
        not in HttpRequestParams.model_validate({"url": "https://x.example/"}).model_fields_set
    )
