"""notify.email through the API and a real worker, delivered to aiosmtpd on loopback:
headers and bodies, HTML alternatives, AUTH, STARTTLS and TLS, retries after 4xx
and lost connections, no retry after 5xx, and the 422s at submission."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import SecretStr

from taskservice.api.app import create_app
from taskservice.registry import TaskRegistry
from taskservice.settings import Settings
from taskservice.worker.library.notify_email import parse_smtp_url
from tests.conftest import running_worker
from tests.helpers import submit, wait_for_status
from tests.processes import free_port

pytestmark = pytest.mark.anyio  # at collection: parametrized async tests need it then

SENDER = "Task Service <tasks@example.com>"
USER, PASSWORD = "mailer", "s3cret-p@ss"


@dataclass
class Mailbox:
    """What the server received; `rcpt_replies` and `data_replies` are answered
    in turn (then 250)."""

    messages: list[tuple[Envelope, EmailMessage]] = field(default_factory=list)
    rcpt_replies: list[str] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    tls: list[bool] = field(default_factory=list)
    port: int = 0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.rcpt_replies:
            reply = self.rcpt_replies.pop(0)
            if not reply.startswith("250"):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_replies:
            return self.data_replies.pop(0)
        assert isinstance(envelope.content, bytes)
        # Lines end in CRLF on the wire; as LF, bodies compare with what was sent.
        content = envelope.content.replace(b"\r\n", b"\n")
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((envelope, message))
        self.tls.append(session.ssl is not None)
        return "250 OK"


def _authenticator(mailbox: Mailbox) -> Any:
    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        if ok:
            mailbox.logins.append(USER)
        return AuthResult(success=ok, handled=False)  # aiosmtpd answers 535 itself

    return authenticate


@contextlib.contextmanager
def smtp_server(*, auth: bool = False, **options: Any) -> Iterator[Mailbox]:
    mailbox = Mailbox(port=free_port())
    if auth:
        options["authenticator"] = _authenticator(mailbox)
    controller = Controller(mailbox, hostname="127.0.0.1", port=mailbox.port, **options)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()


@pytest.fixture
def server_tls(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """The server's TLS context; the worker trusts its certificate (SSL_CERT_FILE,
    which ssl.create_default_context reads)."""
    cert, key = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def _with_smtp(settings: Settings, url: str | None, sender: str | None = SENDER) -> Settings:
    return settings.model_copy(
        update={"smtp_url": SecretStr(url) if url else None, "smtp_from": sender}
    )


@contextlib.asynccontextmanager
async def service(settings: Settings, registry: TaskRegistry) -> Any:
    """The API (in-process) and a worker, both with `settings`."""
    app = create_app(settings, registry=registry)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
        running_worker(settings, registry),
    ):
        yield client


async def _send(client: httpx.AsyncClient, **options: Any) -> dict[str, Any]:
    params = {"to": ["ann@example.com", "bob@example.org"], "subject": "Report ready"}
    params |= {"text": "The report is ready.\n"}
    params |= options.pop("params", {})
    task = await submit(client, type="notify.email", params=params, **options)
    return await wait_for_status(client, task["id"], "completed", "failed", within=20)


async def test_a_text_email_is_delivered_with_its_headers(
    settings: Settings, registry: TaskRegistry
) -> None:
    with smtp_server() as mailbox:
        url = f"smtp://127.0.0.1:{mailbox.port}"
        async with service(_with_smtp(settings, url), registry) as client:
            done = await _send(client)
    assert done["status"] == "completed", done["error"]
    [(envelope, message)] = mailbox.messages
    assert envelope.mail_from == "tasks@example.com"
    assert envelope.rcpt_tos == ["ann@example.com", "bob@example.org"]
    assert message["From"] == SENDER
    assert message["To"] == "ann@example.com, bob@example.org"
    assert message["Subject"] == "Report ready"
    assert message["Date"] is not None
    assert message["Message-ID"].endswith("@example.com>")
    assert message.get_content_type() == "text/plain"
    assert message.get_content() == "The report is ready.\n"
    assert done["result"] == {
        "message_id": message["Message-ID"],
        "accepted": ["ann@example.com", "bob@example.org"],
        "refused": {},
    }


async def test_html_makes_a_multipart_alternative(
    settings: Settings, registry: TaskRegistry
) -> None:
    with smtp_server() as mailbox:
        url = f"smtp://127.0.0.1:{mailbox.port}"
        async with service(_with_smtp(settings, url), registry) as client:
            done = await _send(client, params={"html": "<p>The report is <b>ready</b>.</p>"})
    assert done["status"] == "completed", done["error"]
    [(_, message)] = mailbox.messages
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert all(isinstance(part, EmailMessage) for part in parts)
    assert parts[0].get_content() == "The report is ready.\n"
    assert parts[1].get_content().strip() == "<p>The report is <b>ready</b>.</p>"


# aiosmtpd warns, in its own thread, on each connection (AUTH without TLS, asked for on
# purpose here) and inside its AUTH handling (it sets its own deprecated login_data).
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
@pytest.mark.filterwarnings("ignore:Session.login_data is deprecated:DeprecationWarning")
async def test_auth_logs_in_and_a_refused_login_fails_without_retry_or_leak(
    settings: Settings, registry: TaskRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    with smtp_server(auth=True, auth_required=True, auth_require_tls=False) as mailbox:
        good = f"smtp://{USER}:{PASSWORD.replace('@', '%40')}@127.0.0.1:{mailbox.port}"
        async with service(_with_smtp(settings, good), registry) as client:
            done = await _send(client)
        bad = f"smtp://{USER}:wrong-{PASSWORD.replace('@', '%40')}@127.0.0.1:{mailbox.port}"
        async with service(_with_smtp(settings, bad), registry) as client:
            failed = await _send(client)
            shown = (await client.get(f"/tasks/{failed['id']}")).text
    assert done["status"] == "completed", done["error"]
    assert mailbox.logins == [USER]
    assert len(mailbox.messages) == 1
    assert failed["status"] == "failed"
    assert failed["attempts"] == 1
    assert failed["error"]["type"] == "EmailRejected"
    assert failed["error"]["details"]["reply"]["code"] == 535
    for text in (shown, json.dumps(done), caplog.text):
        assert PASSWORD not in text
        assert PASSWORD.replace("@", "%40") not in text


@pytest.mark.parametrize("scheme", ["starttls", "smtps"])
async def test_tls_by_starttls_or_from_the_start(
    settings: Settings, registry: TaskRegistry, server_tls: ssl.SSLContext, scheme: str
) -> None:
    if scheme == "starttls":
        options: dict[str, Any] = {"tls_context": server_tls, "require_starttls": True}
    else:
        options = {"ssl_context": server_tls}
    with smtp_server(**options) as mailbox:
        url = (
            f"smtp://127.0.0.1:{mailbox.port}?starttls=true"
            if scheme == "starttls"
            else f"smtps://127.0.0.1:{mailbox.port}"
        )
        async with service(_with_smtp(settings, url), registry) as client:
            done = await _send(client)
    assert done["status"] == "completed", done["error"]
    assert len(mailbox.messages) == 1
    if scheme == "starttls":
        assert mailbox.tls == [True]


async def test_a_4xx_reply_is_retried(settings: Settings, registry: TaskRegistry) -> None:
    with smtp_server() as mailbox:
        mailbox.data_replies = ["451 4.3.0 try again later"]
        url = f"smtp://127.0.0.1:{mailbox.port}"
        async with service(_with_smtp(settings, url), registry) as client:
            done = await _send(client, backoff_seconds=0.1)
    assert done["status"] == "completed", done["error"]
    assert done["attempts"] == 2
    assert done["attempt_history"][0]["error"]["type"] == "EmailDeferred"
    assert "451" in done["attempt_history"][0]["error"]["message"]
    assert len(mailbox.messages) == 1


async def test_a_5xx_reply_fails_without_retry(settings: Settings, registry: TaskRegistry) -> None:
    with smtp_server() as mailbox:
        mailbox.rcpt_replies = ["550 5.1.1 no such user", "550 5.1.1 no such user"]
        url = f"smtp://127.0.0.1:{mailbox.port}"
        async with service(_with_smtp(settings, url), registry) as client:
            failed = await _send(client, backoff_seconds=0.1)
    assert failed["status"] == "failed"
    assert failed["attempts"] == 1
    assert failed["error"]["details"]["refused"]["ann@example.com"]["code"] == 550
    assert mailbox.messages == []


async def test_some_recipients_refused_are_listed_in_the_result(
    settings: Settings, registry: TaskRegistry
) -> None:
    with smtp_server() as mailbox:
        mailbox.rcpt_replies = ["250 OK", "550 5.1.1 no such user"]
        url = f"smtp://127.0.0.1:{mailbox.port}"
        async with service(_with_smtp(settings, url), registry) as client:
            done = await _send(client)
    assert done["status"] == "completed", done["error"]
    assert done["result"]["accepted"] == ["ann@example.com"]
    assert done["result"]["refused"] == {
        "bob@example.org": {"code": 550, "message": "5.1.1 no such user"}
    }


async def test_an_unreachable_server_is_retried(settings: Settings, registry: TaskRegistry) -> None:
    url = f"smtp://127.0.0.1:{free_port()}"  # nothing listens there
    async with service(_with_smtp(settings, url), registry) as client:
        failed = await _send(client, max_attempts=2, backoff_seconds=0.1)
    assert failed["status"] == "failed"
    assert [a["error"]["type"] for a in failed["attempt_history"]] == [
        "EmailDeferred",
        "EmailDeferred",
    ]
    assert "could not be reached" in failed["error"]["message"]


@pytest.mark.parametrize(
    ("url", "sender", "reason"),
    [
        (None, SENDER, "TASKSERVICE_SMTP_URL is not set"),
        ("smtp://127.0.0.1:25", None, "TASKSERVICE_SMTP_FROM is not set"),
        ("smtp://127.0.0.1:25", "Task Service", "TASKSERVICE_SMTP_FROM is not an address"),
        ("http://u:hidden@127.0.0.1:25", SENDER, "must be smtp://host:port"),
        ("smtp://127.0.0.1:25?tls=yes", SENDER, "only option is ?starttls=true"),
    ],
)
async def test_email_without_a_usable_server_is_422(
    settings: Settings, registry: TaskRegistry, url: str | None, sender: str | None, reason: str
) -> None:
    app = create_app(_with_smtp(settings, url, sender), registry=registry)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        response = await client.post(
            "/tasks",
            json={
                "type": "notify.email",
                "params": {"to": ["a@example.com"], "subject": "s", "text": "t"},
            },
        )
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "params"]
    assert error["type"] == "smtp_not_configured"
    assert reason in error["msg"]
    assert "hidden" not in response.text


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"to": ["not an address"]}, ["body", "params", "to", 0]),
        ({"to": ["a@example.com", "b@localhost"]}, ["body", "params", "to", 1]),
        ({"to": ["a@example.com\r\nBcc: x@example.com"]}, ["body", "params", "to", 0]),
        ({"to": []}, ["body", "params", "to"]),
        ({"subject": "hi\r\nBcc: x@example.com"}, ["body", "params", "subject"]),
        ({"cc": ["a@example.com"]}, ["body", "params", "cc"]),
    ],
)
async def test_bad_params_are_422(
    settings: Settings, registry: TaskRegistry, params: dict[str, Any], loc: list[Any]
) -> None:
    body = {"to": ["a@example.com"], "subject": "s", "text": "t", **params}
    app = create_app(_with_smtp(settings, "smtp://127.0.0.1:25"), registry=registry)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        response = await client.post("/tasks", json={"type": "notify.email", "params": body})
    assert response.status_code == 422, response.text
    assert [error["loc"][: len(loc)] for error in response.json()["detail"]] == [loc]


def test_smtp_urls_are_parsed() -> None:
    server = parse_smtp_url("smtps://us%40er:p%3Ass@mail.example.com")
    assert (server.host, server.port, server.security) == ("mail.example.com", 465, "tls")
    assert (server.username, server.password) == ("us@er", "p:ss")
    assert "p:ss" not in repr(server)
    assert parse_smtp_url("smtp://h:587?starttls=true").security == "starttls"
    assert parse_smtp_url("smtp://h").port == 25
