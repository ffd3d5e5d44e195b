"""The `http.request` task type: one outbound HTTP call, retried when the far end
may recover, with credentials taken from configuration by name."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import email.utils
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from taskservice.errors import ParamRefused
from taskservice.registry import RetryPolicy, task_type
from taskservice.settings import Settings
from taskservice.worker.failures import DoNotRetry, RetryLater
from taskservice.worker.library import outbound

if TYPE_CHECKING:
    import httpx

# RFC 9110 token characters: what a header name may be made of.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_SECRET_REF = r"^secret:[A-Za-z0-9_]+$"
_MAX_REDIRECTS = 5
# Response headers never kept in a result: they hand out sessions.
_DROPPED_HEADERS = frozenset({"set-cookie", "set-cookie2"})
_REDACTED = "[redacted]"


def check_headers(headers: dict[str, str]) -> dict[str, str]:
    """Headers httpx can send as given: token names, no line breaks in values."""
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"header name {name!r} is not a valid HTTP token")
        if any(c in value for c in "\r\n\x00"):
            raise ValueError(f"header {name!r} may not contain line breaks or NUL")
    return headers


class HttpRequestParams(BaseModel):
    """One HTTP call. Give `json` (sent as JSON) or `body` (sent as text), or neither."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    url: str = Field(
        min_length=1,
        max_length=2000,
        examples=["https://api.example.com/v1/ping"],
        description="http(s) URL; its host must be allowed by TASKSERVICE_HTTP_ALLOWED_HOSTS.",
    )
    headers: dict[str, str] = Field(default_factory=dict, max_length=100)
    json_body: Any = Field(
        default=None, alias="json", description="Sent as the JSON body (Content-Type set)."
    )
    body: str | None = Field(default=None, max_length=1_048_576, description="Sent as text.")
    timeout_seconds: float = Field(
        default=30.0, gt=0, le=300, description="Limit of one attempt, from connect to last byte."
    )
    auth: str | None = Field(
        default=None,
        pattern=_SECRET_REF,
        examples=["secret:stripe"],
        description="`secret:<name>`: the credential configured as TASKSERVICE_SECRET_<NAME>.",
    )
    auth_scheme: str = Field(
        default="Bearer",
        pattern=r"^(Bearer|Basic|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+)$",
        description="How `auth` is sent: `Bearer` (Authorization: Bearer <secret>), `Basic` "
        "(the secret is `user:password`), or `header:<Name>` (the secret as that header).",
    )
    follow_redirects: bool = Field(
        default=False,
        description="Follow up to 5 redirects, each to an allowed host; the credential "
        "is not sent to another origin.",
    )

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        return check_headers(value)

    @model_validator(mode="after")
    def _one_body(self) -> HttpRequestParams:
        if "json_body" in self.model_fields_set and self.body is not None:
            raise ValueError("give json or body, not both")
        return self


def secret_named(reference: str, settings: Settings, loc: tuple[str | int, ...]) -> str:
    """The value of `secret:<name>`, or ParamRefused if the deployment has no such secret."""
    name = reference.removeprefix("secret:").lower()
    secret = settings.secrets.get(name)
    if secret is None:
        raise ParamRefused(
            loc,
            f"no secret named {name!r} is configured (TASKSERVICE_SECRET_{name.upper()})",
            "unknown_secret",
        )
    value = secret.get_secret_value()
    if not value or any(c in value for c in "\r\n\x00"):
        raise ParamRefused(
            loc,
            f"secret {name!r} is empty or holds a line break or NUL, which no HTTP "
            f"header can carry: fix TASKSERVICE_SECRET_{name.upper()}",
            "unusable_secret",
        )
    return value


async def _check(params: HttpRequestParams, settings: Settings) -> None:
    await outbound.check_url(params.url, settings, ("url",))
    if params.auth is not None:
        secret_named(params.auth, settings, ("auth",))


@dataclass(frozen=True)
class Credential:
    """A header that carries a secret: never sent to another origin, and
    blanked wherever the far end echoes it."""

    header: str
    value: str
    secret: str

    @classmethod
    def of(cls, params: HttpRequestParams, settings: Settings) -> Credential | None:
        if params.auth is None:
            return None
        secret = secret_named(params.auth, settings, ("auth",))
        scheme = params.auth_scheme
        if scheme == "Bearer":
            return cls("Authorization", f"Bearer {secret}", secret)
        if scheme == "Basic":
            token = base64.b64encode(secret.encode()).decode()
            return cls("Authorization", f"Basic {token}", secret)
        return cls(scheme.removeprefix("header:"), secret, secret)

    def redact(self, text: str) -> str:
        for value in sorted({self.value, self.secret} - {""}, key=len, reverse=True):
            text = text.replace(value, _REDACTED)
        return text


def _redact(text: str, credential: Credential | None) -> str:
    return text if credential is None else credential.redact(text)


def retry_after_seconds(value: str | None, now: datetime.datetime | None = None) -> float | None:
    """A Retry-After header in seconds: delay-seconds or an HTTP date; None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    now = now or datetime.datetime.now(datetime.UTC)
    return max(0.0, (when - now).total_seconds())


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _storable(text: str) -> str:
    # jsonb holds no NUL, neither raw nor escaped in a JSON string.
    return text.replace("\x00", "\ufffd").replace("\\u0000", "\\ufffd")


def response_record(
    response: httpx.Response, content: bytes, truncated: bool, credential: Credential | None
) -> dict[str, Any]:
    """`{"status", "headers", "body", "truncated"}`: the body decoded from JSON when
    it says it is JSON (and came whole), else text; no cookies, no credential."""
    encoding = response.charset_encoding or "utf-8"
    try:
        text = content.decode(encoding, errors="replace")
    except LookupError:
        text = content.decode("utf-8", errors="replace")
    text = _storable(text)
    headers: dict[str, str] = {}
    for name, value in response.headers.multi_items():
        if name.lower() in _DROPPED_HEADERS:
            continue
        value = _storable(value)
        headers[name.lower()] = (
            f"{headers[name.lower()]}, {value}" if name.lower() in headers else value
        )
    if credential is not None:
        text = credential.redact(text)
        headers = {name: credential.redact(value) for name, value in headers.items()}
    body: Any = text
    if not truncated and text and _is_json(response.headers.get("content-type", "")):
        with contextlib.suppress(ValueError):  # not JSON after all: kept as text
            body = json.loads(text)
    return {
        "status": response.status_code,
        "headers": headers,
        "body": body,
        "truncated": truncated,
    }


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


async def exchange(
    request: httpx.Request,
    settings: Settings,
    *,
    limit_seconds: float,
    follow_redirects: bool = False,
    credential: Credential | None = None,
) -> dict[str, Any]:
    """Send `request` through the checked client, all of it (redirects and body
    included) within `limit_seconds`; the response's record if it is a success
    (or a redirect not followed). A 429, a 5xx, a timeout or a lost connection
    raises RetryLater; another 4xx or a refused destination DoNotRetry."""
    import httpx

    url = request.url
    try:
        async with (
            asyncio.timeout(limit_seconds),
            outbound.client(settings, timeout=limit_seconds) as http,
        ):
            for _ in range(_MAX_REDIRECTS + 1):
                response = await http.send(request, stream=True)
                try:
                    next_request = response.next_request if follow_redirects else None
                    if next_request is None:
                        content, truncated = await outbound.read_capped(
                            response, settings.http_max_response_bytes
                        )
                        break
                    if credential is not None and not _same_origin(request.url, next_request.url):
                        next_request.headers.pop(credential.header, None)
                    request = next_request
                finally:
                    await response.aclose()
            else:
                raise DoNotRetry(f"more than {_MAX_REDIRECTS} redirects from {url}")
    except outbound.DestinationRefused as exc:
        raise DoNotRetry(f"refused: {exc}") from None
    except outbound.UndecodableBody as exc:
        raise DoNotRetry(f"{exc} (from {url})") from None
    except (TimeoutError, httpx.TimeoutException):
        raise RetryLater(f"no whole answer from {url} within {limit_seconds:g} s") from None
    except httpx.TransportError as exc:
        # h11 quotes a header value it refuses: the credential never reaches the error.
        detail = _redact(str(exc), credential) or "no detail"
        raise RetryLater(f"{type(exc).__name__} calling {url}: {detail}") from None
    record = response_record(response, content, truncated, credential)
    status = response.status_code
    if status == 429 or status >= 500:
        raise RetryLater(
            f"HTTP {status} from {request.url}",
            retry_after=retry_after_seconds(response.headers.get("retry-after")),
            details={"response": record},
        )
    if status >= 400:
        raise DoNotRetry(f"HTTP {status} from {request.url}", details={"response": record})
    return record


def build_request(params: HttpRequestParams, credential: Credential | None) -> httpx.Request:
    import httpx

    headers = dict(params.headers)
    if credential is not None:
        headers[credential.header] = credential.value
    if "json_body" in params.model_fields_set:
        return httpx.Request(params.method, params.url, headers=headers, json=params.json_body)
    return httpx.Request(params.method, params.url, headers=headers, content=params.body)


@task_type(
    "http.request",
    params=HttpRequestParams,
    # 5 attempts over about half a minute, longer if the server asks (Retry-After).
    retry=RetryPolicy(max_attempts=5, backoff_seconds=2, backoff_factor=2, retry_on=(RetryLater,)),
    timeout_seconds=600,
    check=_check,
)
async def http_request(params: HttpRequestParams, *, settings: Settings) -> dict[str, Any]:
    """Make one HTTP call to an allowed host; the result is `{"status", "headers",
    "body", "truncated"}` (a JSON body decoded). Retried on connection errors,
    timeouts, 429 (after its Retry-After) and 5xx; any other 4xx fails at once
    with the response in `error.details.response`."""
    credential = Credential.of(params, settings)
    try:
        return await exchange(
            build_request(params, credential),
            settings,
            limit_seconds=params.timeout_seconds,
            follow_redirects=params.follow_redirects,
            credential=credential,
        )
    except (DoNotRetry, RetryLater):
        raise
    except Exception as exc:
        # Whatever else failed (httpx refusing a header, say) may quote the
        # credential: the error keeps its type and a blanked message, no cause.
        if credential is not None and credential.redact(str(exc)) != str(exc):
            raise DoNotRetry(f"{type(exc).__name__}: {credential.redact(str(exc))}") from None
        raise
