"""Customer message connectors over real loopback servers: ``zendesk`` against the Zendesk
emulator (real HTTP), ``smtp`` against the aiosmtpd test server (real SMTP)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from recoverydesk.bootstrap import CONNECTORS
from recoverydesk.connectors.messages import (
    TEMPLATES,
    SmtpMessages,
    ZendeskMessages,
    key_tag,
    render,
)
from recoverydesk.sandbox.zendesk_emulator import RunningZendesk, ZendeskEmulator, serve_zendesk
from recoverydesk.services.clock import SimulatedClock
from recoverydesk.services.ports import OutsideCommand, OutsideUnavailable
from tests.integration.test_notify import SmtpServer

EMAIL = "agent@acme.test"
TOKEN = "zd-token"
NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _command(
    system: str, connection: dict[str, Any], *, key: str = "c1:notify:1", **params: Any
) -> OutsideCommand:
    fields: dict[str, Any] = {
        "template": "cancellation_confirmed",
        "to": "kim@example.com",
        **params,
    }
    return OutsideCommand(
        1,
        "1001",
        system,
        "send_message",
        key,
        {k: v for k, v in fields.items() if v is not None},
        connection=connection,
    )


# -- the templates -------------------------------------------------------------------------------


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_every_template_renders_a_short_subject_and_body(template: str) -> None:
    message = render(template, order="1001", lines=[{"sku": "LAMP", "qty": 2}])
    assert "#1001" in message.subject
    assert "\n" not in message.subject
    assert "#1001" in message.body
    assert "{" not in message.body
    assert message.body.lower().count("please reply") == 1  # one ask


def test_a_partial_cancellation_names_its_lines() -> None:
    message = render(
        "partial_cancellation_confirmed",
        order="1001",
        lines=[{"sku": "LAMP", "qty": 2}, {"sku": "SHADE", "qty": 1}],
    )
    assert "- 2 x LAMP\n- 1 x SHADE" in message.body


def test_the_desk_knows_both_kinds() -> None:
    assert isinstance(CONNECTORS["zendesk"], ZendeskMessages)
    assert isinstance(CONNECTORS["smtp"], SmtpMessages)


# -- Zendesk -------------------------------------------------------------------------------------


@pytest.fixture
def zendesk() -> Iterator[RunningZendesk]:
    emulator = ZendeskEmulator(email=EMAIL, token=TOKEN)
    emulator.add_ticket(42)
    with serve_zendesk(emulator) as running:
        yield running


@pytest.fixture
def zendesk_connector() -> Iterator[ZendeskMessages]:
    connector = ZendeskMessages(timeout=5.0)
    try:
        yield connector
    finally:
        connector.close()


def _zd(base_url: str, *, token: str = TOKEN, **extra: Any) -> dict[str, Any]:
    return {"kind": "zendesk", "base_url": base_url, "email": EMAIL, "api_key": token, **extra}


def test_a_message_is_a_public_comment_with_tags_and_status(
    zendesk: RunningZendesk, zendesk_connector: ZendeskMessages
) -> None:
    # when
    answer = zendesk_connector.send(_command("helpdesk", _zd(zendesk.base_url), ticket="42"))
    # then
    assert answer.accepted, answer
    assert answer.facts == {
        "ticket": "42",
        "status": "solved",
        "template": "cancellation_confirmed",
    }
    ticket = zendesk.emulator.ticket(42)
    assert ticket is not None
    [comment] = ticket["comments"]
    assert comment["public"] is True
    assert comment["body"] == render("cancellation_confirmed", order="1001").body
    assert answer.reference is not None
    assert ticket["status"] == "solved"
    assert ticket["tags"] == ["recoverydesk", "cancellation_confirmed", key_tag("c1:notify:1")]


def test_return_instructions_leave_the_ticket_pending(
    zendesk: RunningZendesk, zendesk_connector: ZendeskMessages
) -> None:
    command = _command(
        "helpdesk", _zd(zendesk.base_url), ticket="42", template="return_instructions"
    )
    assert zendesk_connector.send(command).accepted
    ticket = zendesk.emulator.ticket(42)
    assert ticket is not None
    assert ticket["status"] == "pending"


def test_a_repeat_adds_no_second_comment(
    zendesk: RunningZendesk, zendesk_connector: ZendeskMessages
) -> None:
    command = _command("helpdesk", _zd(zendesk.base_url), ticket="42")
    first = zendesk_connector.send(command)
    again = zendesk_connector.send(command)
    assert first.accepted
    assert again.accepted
    assert again.facts["repeat"] is True
    ticket = zendesk.emulator.ticket(42)
    assert ticket is not None
    assert len(ticket["comments"]) == 1
    assert [m for m, _ in zendesk.emulator.received] == ["GET", "PUT", "GET"]
    # another message (another key) on the same ticket is posted
    other = _command(
        "helpdesk", _zd(zendesk.base_url), ticket="42", key="c1:refund:1", template="refund_issued"
    )
    assert zendesk_connector.send(other).accepted
    ticket = zendesk.emulator.ticket(42)
    assert ticket is not None
    assert len(ticket["comments"]) == 2


def test_rate_limiting_and_server_errors_are_retried_later(
    zendesk: RunningZendesk, zendesk_connector: ZendeskMessages
) -> None:
    command = _command("helpdesk", _zd(zendesk.base_url), ticket="42")
    zendesk.emulator.rate_limit(retry_after=17)
    with pytest.raises(OutsideUnavailable, match=r"429 \(retry after 17s\)"):
        zendesk_connector.send(command)
    zendesk.emulator.fail_next(503)
    with pytest.raises(OutsideUnavailable, match="HTTP 503"):
        zendesk_connector.send(command)
    ticket = zendesk.emulator.ticket(42)
    assert ticket is not None
    assert ticket["comments"] == []
    # and then it goes through
    assert zendesk_connector.send(command).accepted


def test_timeouts_and_a_closed_port_are_retried_later(
    zendesk: RunningZendesk, zendesk_connector: ZendeskMessages
) -> None:
    zendesk.emulator.latency = 0.5
    slow = _command("helpdesk", _zd(zendesk.base_url, timeout_seconds=0.1), ticket="42")
    with pytest.raises(OutsideUnavailable, match="timed out"):
        zendesk_connector.send(slow)
    closed = _command("helpdesk", _zd(f"http://127.0.0.1:{_free_port()}"), ticket="42")
    with pytest.raises(OutsideUnavailable, match="ConnectError"):
        zendesk_connector.send(closed)


@pytest.mark.parametrize(
    ("ticket", "token", "status", "message"),
    [
        ("42", "wrong", 401, "Couldn't authenticate you"),
        ("77", TOKEN, 404, "Not found"),
        ("43", TOKEN, 422, "Record validation errors: Status: closed prevents ticket update"),
    ],
)
def test_refusals_carry_zendesks_message(
    zendesk: RunningZendesk,
    zendesk_connector: ZendeskMessages,
    ticket: str,
    token: str,
    status: int,
    message: str,
) -> None:
    zendesk.emulator.add_ticket(43, status="closed")
    answer = zendesk_connector.send(
        _command("helpdesk", _zd(zendesk.base_url, token=token), ticket=ticket)
    )
    assert (answer.accepted, answer.message) == (False, message)
    assert answer.facts["http_status"] == status


def test_an_incomplete_command_is_refused_without_a_request(
    zendesk: RunningZendesk, zendesk_connector: ZendeskMessages
) -> None:
    bare = zendesk_connector.send(_command("helpdesk", {"kind": "zendesk"}, ticket="42"))
    assert bare.facts["code"] == "connection_incomplete"
    no_ticket = zendesk_connector.send(_command("helpdesk", _zd(zendesk.base_url)))
    assert no_ticket.facts["code"] == "no_ticket"
    odd = zendesk_connector.send(
        _command("helpdesk", _zd(zendesk.base_url), ticket="42", template="hello")
    )
    assert odd.facts["code"] == "unknown_template"
    assert zendesk.emulator.received == []


# -- SMTP ----------------------------------------------------------------------------------------


def _smtp(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "sender": "care@acme.test",
        **extra,
    }


def _mailer() -> SmtpMessages:
    return SmtpMessages(timeout=5.0, clock=SimulatedClock(NOW))


def test_an_email_carries_subject_body_and_a_message_id_from_the_key(
    smtp_server: SmtpServer,
) -> None:
    command = _command(
        "email",
        _smtp(smtp_server.port, username="desk", password="hunter2"),
        template="partial_cancellation_confirmed",
        lines=[{"sku": "LAMP", "qty": 1}],
    )
    answer = _mailer().send(command)
    assert answer.accepted, answer
    [delivery] = smtp_server.mailbox.deliveries
    expected = render("partial_cancellation_confirmed", order="1001", lines=command.params["lines"])
    assert delivery.mail_from == "care@acme.test"
    assert delivery.rcpt_tos == ["kim@example.com"]
    assert delivery.message["Subject"] == expected.subject
    body: str = delivery.message.get_content()
    assert body.replace("\r\n", "\n") == expected.body
    assert delivery.message["Message-ID"] == answer.reference
    assert delivery.message["X-Recoverydesk-Key"] == "c1:notify:1"
    assert smtp_server.mailbox.logins == [(b"desk", b"hunter2")]
    # a repeat is recognisable: the same Message-ID
    assert _mailer().send(command).accepted
    first, second = smtp_server.mailbox.deliveries
    assert first.message["Message-ID"] == second.message["Message-ID"]


def test_a_refused_recipient_is_a_refusal(smtp_server: SmtpServer) -> None:
    smtp_server.mailbox.refuse.add("kim@example.com")
    answer = _mailer().send(_command("email", _smtp(smtp_server.port)))
    assert answer.accepted is False
    assert answer.facts["code"] == "recipient_refused"
    assert answer.message is not None
    assert "550" in answer.message
    assert smtp_server.mailbox.deliveries == []


def test_a_wrong_password_is_a_refusal(smtp_server: SmtpServer) -> None:
    answer = _mailer().send(
        _command("email", _smtp(smtp_server.port, username="desk", password="nope"))
    )
    assert answer.accepted is False
    assert answer.facts["smtp_code"] == 535


def test_a_server_down_is_retried_later() -> None:
    with pytest.raises(OutsideUnavailable, match=r"SMTP 127\.0\.0\.1"):
        _mailer().send(_command("email", _smtp(_free_port())))


def test_an_email_without_a_recipient_is_refused(smtp_server: SmtpServer) -> None:
    answer = _mailer().send(_command("email", _smtp(smtp_server.port), to=None))
    assert (answer.accepted, answer.facts["code"]) == (False, "no_recipient")
    incomplete = _mailer().send(_command("email", {"kind": "smtp"}))
    assert incomplete.facts["code"] == "connection_incomplete"
    assert smtp_server.mailbox.deliveries == []
