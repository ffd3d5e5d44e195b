"""notify.email: one message (text, optionally with an HTML alternative) through
the deployment's SMTP server (TASKSERVICE_SMTP_URL, TASKSERVICE_SMTP_FROM)."""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from taskservice.errors import ParamRefused
from taskservice.registry import RetryPolicy, task_type
from taskservice.settings import Settings
from taskservice.worker.library.errors import EmailDeferred, EmailRejected

# An addr-spec of dot-atoms (RFC 5322 3.4.1) with a dotted domain: what mail
# to people looks like. No display names, quoted local parts or IDN.
_ADDRESS = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)
# Each body's limit: a notification, not a newsletter. Both at their limit, escaped
# as JSON (up to 12 bytes a character), stay within the default request limit of
# 1 MiB (TASKSERVICE_MAX_BODY_BYTES), so a longer one is a 422 naming it, not a 413.
MAX_BODY_CHARACTERS = 40_000
# Per connect, command and reply: a stuck server costs one attempt, not the run.
SMTP_TIMEOUT_SECONDS = 30.0


def _address(value: str) -> str:
    if len(value) > 254 or not _ADDRESS.match(value):
        raise ValueError(f"{value!r} is not an email address (name@example.com)")
    return value


def _one_line(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("may not contain line breaks")
    return value


class EmailParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: list[Annotated[str, AfterValidator(_address)]] = Field(
        min_length=1, max_length=100, description="Recipients (name@example.com)."
    )
    subject: Annotated[str, AfterValidator(_one_line)] = Field(max_length=998)
    text: str = Field(max_length=MAX_BODY_CHARACTERS, description="The plain-text body.")
    html: str | None = Field(
        default=None,
        max_length=MAX_BODY_CHARACTERS,
        description="An HTML body as well: the message becomes multipart/alternative.",
    )


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    security: Literal["none", "starttls", "tls"]
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """How messages name the server: never with its credentials."""
        return f"{self.host}:{self.port}"


def parse_smtp_url(url: str) -> SmtpServer:
    """TASKSERVICE_SMTP_URL's parts; ValueError (never quoting the URL, which
    may hold a password) when it is not `smtp://[user:password@]host[:port]
    [?starttls=true]` or `smtps://...`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("it is not a valid URL") from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("it must be smtp://host:port or smtps://host:port")
    query = dict(parse_qsl(parts.query))
    if set(query) - {"starttls"} or query.get("starttls", "false") not in ("true", "false"):
        raise ValueError("its only option is ?starttls=true")
    if parts.scheme == "smtps":
        security: Literal["none", "starttls", "tls"] = "tls"
    else:
        security = "starttls" if query.get("starttls") == "true" else "none"
    return SmtpServer(
        host=parts.hostname,
        port=port or (465 if security == "tls" else 25),
        security=security,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _server(settings: Settings) -> tuple[SmtpServer, str]:
    """The configured server and sender; ValueError naming what is missing."""
    if settings.smtp_url is None:
        raise ValueError("email is disabled on this deployment: TASKSERVICE_SMTP_URL is not set")
    if not settings.smtp_from:
        raise ValueError("email is disabled on this deployment: TASKSERVICE_SMTP_FROM is not set")
    if "@" not in parseaddr(settings.smtp_from)[1]:
        raise ValueError("TASKSERVICE_SMTP_FROM is not an address (Name <name@example.com>)")
    try:
        server = parse_smtp_url(settings.smtp_url.get_secret_value())
    except ValueError as exc:
        raise ValueError(f"TASKSERVICE_SMTP_URL is not usable: {exc}") from None
    return server, settings.smtp_from


async def check_email(params: EmailParams, settings: Settings) -> None:
    """Refuse email where the deployment has no mail server."""
    try:
        _server(settings)
    except ValueError as exc:
        raise ParamRefused((), str(exc), "smtp_not_configured") from None


def build_message(params: EmailParams, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(params.to)
    message["Subject"] = params.subject
    message["Date"] = formatdate(usegmt=True)
    # The sender's domain, not the worker's host name (getfqdn may be slow or private).
    domain = parseaddr(sender)[1].rpartition("@")[2] or None
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(params.text)
    if params.html is not None:
        message.add_alternative(params.html, subtype="html")
    return message


def _send(server: SmtpServer, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
    """Deliver `message` to its To addresses; the recipients the server refused."""
    tls = ssl.create_default_context()
    smtp: smtplib.SMTP
    if server.security == "tls":
        smtp = smtplib.SMTP_SSL(server.host, server.port, timeout=SMTP_TIMEOUT_SECONDS, context=tls)
    else:
        smtp = smtplib.SMTP(server.host, server.port, timeout=SMTP_TIMEOUT_SECONDS)
    with smtp:
        if server.security == "starttls":
            smtp.starttls(context=tls)
        if server.username is not None:
            smtp.login(server.username, server.password or "")
        return smtp.send_message(message)


def _reply(code: int, text: bytes | str) -> dict[str, Any]:
    return {
        "code": code,
        "message": text.decode(errors="replace") if isinstance(text, bytes) else text,
    }


def _failed(exc: Exception, server: SmtpServer) -> Exception:
    """The task's failure for an SMTP error: EmailDeferred (retried) for a lost
    connection or a 4xx reply, EmailRejected (not retried) for a 5xx reply or a TLS failure."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = {address: _reply(*reply) for address, reply in exc.recipients.items()}
        if any(400 <= reply["code"] < 500 for reply in refused.values()):
            return EmailDeferred(f"{server.name} deferred the recipients: {refused}")
        return EmailRejected(f"{server.name} refused every recipient", details={"refused": refused})
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = _reply(exc.smtp_code, exc.smtp_error)
        if 400 <= exc.smtp_code < 500:
            return EmailDeferred(f"{server.name} answered {reply['code']} {reply['message']}")
        return EmailRejected(
            f"{server.name} answered {reply['code']} {reply['message']}", details={"reply": reply}
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return EmailRejected(
            f"{server.name} does not support what TASKSERVICE_SMTP_URL asks: {exc}"
        )
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return EmailRejected(f"TLS with {server.name} failed: {exc}")
    return EmailDeferred(f"{server.name} could not be reached: {exc!r}")


@task_type(
    "notify.email",
    params=EmailParams,
    retry=RetryPolicy(
        max_attempts=5,
        backoff_seconds=30.0,
        backoff_factor=2.0,
        max_backoff_seconds=1800.0,
        retry_on=(EmailDeferred,),
    ),
    timeout_seconds=300,
    check=check_email,
)
async def notify_email(params: EmailParams, *, settings: Settings) -> dict[str, Any]:
    """Send one email; result `{"message_id", "accepted", "refused"}`. Retried
    after a lost connection or a 4xx reply; a 5xx reply fails at once."""
    try:
        server, sender = _server(settings)
    except ValueError as exc:
        raise EmailRejected(str(exc)) from None
    message = build_message(params, sender)
    try:
        refused = await asyncio.to_thread(_send, server, message)
    except (smtplib.SMTPException, OSError) as exc:
        raise _failed(exc, server) from exc
    return {
        "message_id": message["Message-ID"],
        "accepted": [address for address in params.to if address not in refused],
        "refused": {address: _reply(*reply) for address, reply in refused.items()},
    }
