"""Notification adapters against real localhost servers: aiosmtpd (SMTP), http.server (chat)."""

from __future__ import annotations

import email
import hashlib
import hmac
import json
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from email import policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from recoverydesk.connectors.notify import (
    PermanentNotificationFailure,
    SmtpEmailSender,
    WebhookChatSender,
)
from recoverydesk.services.clock import SimulatedClock
from recoverydesk.services.notifications import Notification, NotificationFailed

NOW = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
SECRET = "s3cret-hook-key"
# RFC 5322 msg-id with a dot-atom-text left part.
ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
MESSAGE_ID = re.compile(rf"<{ATEXT}(?:\.{ATEXT})*@{ATEXT}(?:\.{ATEXT})*>")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _breach(key: str = "esc:acme:42:first_touch:breach", **changes: Any) -> Notification:
    fields: dict[str, Any] = {
        "key": key,
        "subject": "SLA breach: case 42 (first touch)",
        "body": "Case 42 for order #1001 missed its first-touch SLA.\nOwner: dana",
        "recipients": ("ops@acme.test", "lead@acme.test"),
        "facts": {"case": 42, "order": "#1001", "refund": Decimal("12.50"), "due": NOW},
    }
    fields.update(changes)
    return Notification(**fields)


# --- SMTP ------------------------------------------------------------------------------------


@dataclass
class Delivery:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage


@dataclass
class Mailbox:
    """An aiosmtpd handler keeping every accepted message; refuses the addresses in ``refuse``."""

    deliveries: list[Delivery] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        sender = envelope.mail_from or ""
        self.deliveries.append(Delivery(sender, list(envelope.rcpt_tos), raw, parsed))
        return "250 2.0.0 accepted"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login, data.password))
        if data.password == b"hunter2":
            return AuthResult(success=True, auth_data=data)
        return AuthResult(success=False, handled=False)  # the server answers 535


def _text(message: EmailMessage) -> str:
    """The plain-text body with line breaks as written (MIME text travels with CRLF)."""
    content: str = message.get_content()
    return content.replace("\r\n", "\n").removesuffix("\n")


@dataclass
class SmtpServer:
    port: int
    mailbox: Mailbox


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    mailbox = Mailbox()
    port = _free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=mailbox.authenticate,
        auth_require_tls=False,  # lets the test log in over plain TCP on localhost
    )
    controller.start()
    try:
        yield SmtpServer(port, mailbox)
    finally:
        controller.stop()
        controller.loop.close()


def _sender(port: int, **options: Any) -> SmtpEmailSender:
    return SmtpEmailSender(
        "127.0.0.1", port, "desk@recoverydesk.test", clock=SimulatedClock(NOW), **options
    )


def test_email_carries_recipients_subject_body_and_key(smtp_server: SmtpServer) -> None:
    # given
    notification = _breach()
    # when
    _sender(smtp_server.port).send(notification)
    # then
    [delivery] = smtp_server.mailbox.deliveries
    message = delivery.message
    assert delivery.mail_from == "desk@recoverydesk.test"
    assert delivery.rcpt_tos == ["ops@acme.test", "lead@acme.test"]
    assert message["To"] == "ops@acme.test, lead@acme.test"
    assert message["Subject"] == "SLA breach: case 42 (first touch)"
    assert _text(message) == notification.body
    assert message["X-Recoverydesk-Key"] == "esc:acme:42:first_touch:breach"
    assert message["Message-ID"] == "<esc%3Aacme%3A42%3Afirst_touch%3Abreach@recoverydesk>"
    assert parsedate_to_datetime(message["Date"]) == NOW


def test_same_notification_twice_arrives_twice_with_one_message_id(
    smtp_server: SmtpServer,
) -> None:
    # given
    sender = _sender(smtp_server.port)
    # when: the job is retried after a worker died mid-send
    sender.send(_breach())
    sender.send(_breach())
    # then: the receiver sees two deliveries it can collapse by Message-ID
    first, second = smtp_server.mailbox.deliveries
    assert first.message["Message-ID"] == second.message["Message-ID"]
    assert first.message["X-Recoverydesk-Key"] == second.message["X-Recoverydesk-Key"]


def test_message_id_is_valid_and_keeps_distinct_keys_distinct(smtp_server: SmtpServer) -> None:
    # given: keys that a lossy sanitiser would merge, one long enough to be folded
    keys = ["esc:acme:42", "esc-acme-42", "esc%3Aacme%3A42", "esc.acme..42.", "esc/acme 42 ü"]
    keys.append("esc:" + "very-long-merchant-name-" * 6 + ":breach")
    sender = _sender(smtp_server.port)
    # when
    for key in keys:
        sender.send(_breach(key))
    # then
    deliveries = smtp_server.mailbox.deliveries
    ids = [delivery.message["Message-ID"] for delivery in deliveries]
    assert all(MESSAGE_ID.fullmatch(message_id) for message_id in ids), ids
    assert len(set(ids)) == len(keys)
    assert [delivery.message["X-Recoverydesk-Key"] for delivery in deliveries] == keys
    assert f"X-Recoverydesk-Key: {keys[-1]}\r\n".encode() in deliveries[-1].raw


def test_email_without_recipients_is_skipped(smtp_server: SmtpServer) -> None:
    # when
    _sender(smtp_server.port).send(_breach(recipients=()))
    # then
    assert smtp_server.mailbox.deliveries == []


def test_email_body_and_subject_with_non_ascii_and_line_breaks(smtp_server: SmtpServer) -> None:
    # given
    notification = _breach(subject="Rückerstattung\r\nBcc: evil@x.test", body="Grüße, Señor ✓")
    # when
    _sender(smtp_server.port).send(notification)
    # then: the subject cannot inject headers and the body survives a 7-bit transport
    [delivery] = smtp_server.mailbox.deliveries
    assert delivery.message["Subject"] == "Rückerstattung Bcc: evil@x.test"
    assert delivery.message["Bcc"] is None
    assert _text(delivery.message) == "Grüße, Señor ✓"
    assert delivery.raw.isascii()


def test_email_logs_in_with_credentials(smtp_server: SmtpServer) -> None:
    # when
    _sender(smtp_server.port, username="desk", password="hunter2").send(_breach())
    # then
    assert smtp_server.mailbox.logins == [(b"desk", b"hunter2")]
    assert len(smtp_server.mailbox.deliveries) == 1


def test_email_with_wrong_password_fails(smtp_server: SmtpServer) -> None:
    # when / then
    with pytest.raises(NotificationFailed, match=rf"127\.0\.0\.1:{smtp_server.port}.*535"):
        _sender(smtp_server.port, username="desk", password="wrong").send(_breach())
    assert smtp_server.mailbox.deliveries == []


def test_email_starttls_refused_by_server_fails(smtp_server: SmtpServer) -> None:
    # when / then: the server offers no STARTTLS, so nothing goes out in clear
    with pytest.raises(NotificationFailed, match="STARTTLS"):
        _sender(smtp_server.port, starttls=True).send(_breach())
    assert smtp_server.mailbox.deliveries == []


def test_email_with_a_refused_recipient_fails_after_delivering_the_rest(
    smtp_server: SmtpServer,
) -> None:
    # given
    smtp_server.mailbox.refuse.add("lead@acme.test")
    # when / then
    with pytest.raises(NotificationFailed, match=re.escape("lead@acme.test")):
        _sender(smtp_server.port).send(_breach())
    [delivery] = smtp_server.mailbox.deliveries
    assert delivery.rcpt_tos == ["ops@acme.test"]


def test_email_to_a_server_that_is_down_fails() -> None:
    # given: a port nobody listens on
    port = _free_port()
    # when / then
    with pytest.raises(NotificationFailed, match=rf"SMTP 127\.0\.0\.1:{port} failed") as failure:
        _sender(port, timeout=2.0).send(_breach())
    assert not isinstance(failure.value, PermanentNotificationFailure)


def test_email_sender_needs_username_and_password_together() -> None:
    with pytest.raises(ValueError, match="username and password"):
        SmtpEmailSender("127.0.0.1", 25, "desk@recoverydesk.test", username="desk")


# --- chat webhook ----------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ChatReceiver:
    """Answers ``POST /status/<code>/...`` with that code, anything else with 200."""

    base_url: str
    requests: list[Received]


def _receiver_handler(requests: list[Received]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {name.lower(): value for name, value in self.headers.items()}
            requests.append(Received(self.path, headers, body))
            parts = self.path.split("/")
            status = int(parts[2]) if parts[1] == "status" else 200
            answer = b"ok" if status < 300 else b"invalid_payload"
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

    return Handler


@pytest.fixture
def chat_receiver() -> Iterator[ChatReceiver]:
    requests: list[Received] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _receiver_handler(requests))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield ChatReceiver(f"http://{host!s}:{port}", requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0, trust_env=False) as http:
        yield http


def _chat(client: httpx.Client, secret: str | None = None) -> WebhookChatSender:
    return WebhookChatSender(client, secret=secret, clock=SimulatedClock(NOW))


def test_chat_post_sends_text_key_subject_and_facts(
    chat_receiver: ChatReceiver, client: httpx.Client
) -> None:
    # given
    notification = _breach()
    # when
    _chat(client).post(f"{chat_receiver.base_url}/hooks/T000/B000/XXXX", notification)
    # then
    [request] = chat_receiver.requests
    assert request.path == "/hooks/T000/B000/XXXX"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == "esc:acme:42:first_touch:breach"
    assert "x-recoverydesk-signature" not in request.headers
    assert json.loads(request.body) == {
        "text": f"{notification.subject}\n{notification.body}",
        "key": "esc:acme:42:first_touch:breach",
        "subject": notification.subject,
        "facts": {"case": 42, "order": "#1001", "refund": "12.50", "due": NOW.isoformat()},
    }


def test_chat_post_twice_carries_the_same_idempotency_key(
    chat_receiver: ChatReceiver, client: httpx.Client
) -> None:
    # when
    sender = _chat(client)
    sender.post(f"{chat_receiver.base_url}/hooks/x", _breach())
    sender.post(f"{chat_receiver.base_url}/hooks/x", _breach())
    # then
    first, second = chat_receiver.requests
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert first.body == second.body


def test_signed_chat_post_verifies_with_the_secret(
    chat_receiver: ChatReceiver, client: httpx.Client
) -> None:
    # when
    _chat(client, secret=SECRET).post(f"{chat_receiver.base_url}/hooks/x", _breach())
    # then
    [request] = chat_receiver.requests
    expected = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["x-recoverydesk-signature"], f"sha256={expected}")
    assert request.headers["x-recoverydesk-timestamp"] == str(int(NOW.timestamp()))
    forged = hmac.new(b"other", request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-recoverydesk-signature"] != f"sha256={forged}"


@pytest.mark.parametrize("status", [500, 503, 429, 408])
def test_chat_retryable_answer_fails_for_a_retry(
    chat_receiver: ChatReceiver, client: httpx.Client, status: int
) -> None:
    # when / then
    with pytest.raises(NotificationFailed, match=rf"answered {status}") as failure:
        _chat(client).post(f"{chat_receiver.base_url}/status/{status}/hook", _breach())
    assert not isinstance(failure.value, PermanentNotificationFailure)


@pytest.mark.parametrize("status", [400, 403, 404])
def test_chat_client_error_fails_permanently(
    chat_receiver: ChatReceiver, client: httpx.Client, status: int
) -> None:
    # when / then
    with pytest.raises(PermanentNotificationFailure, match=rf"answered {status}.*invalid_payload"):
        _chat(client).post(f"{chat_receiver.base_url}/status/{status}/hook", _breach())


def test_chat_receiver_down_fails_without_leaking_the_hook_path(client: httpx.Client) -> None:
    # given: a port nobody listens on; the path is the hook's secret
    url = f"http://127.0.0.1:{_free_port()}/hooks/T000/B000/SECRET-TOKEN"
    # when / then
    with pytest.raises(NotificationFailed) as failure:
        _chat(client).post(url, _breach())
    assert not isinstance(failure.value, PermanentNotificationFailure)
    assert "127.0.0.1" in str(failure.value)
    assert "SECRET-TOKEN" not in str(failure.value)


def test_chat_facts_that_are_not_json_fail_permanently(client: httpx.Client) -> None:
    # given: no request goes out, so no server is needed
    notification = _breach(facts={"handler": object()})
    # when / then
    with pytest.raises(PermanentNotificationFailure, match="cannot encode"):
        _chat(client).post("http://127.0.0.1:9/hooks/x", notification)
