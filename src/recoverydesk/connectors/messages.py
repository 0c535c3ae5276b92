"""Customer messages out of the desk (``send_message``): a Zendesk ticket comment or an email.

A message command (``domain.stopship``) has system ``helpdesk`` (the order has a ticket) or
``email``, and ``params`` ``{template, to, ticket, lines?}``. The text comes from a small
built-in renderer (``render``): five plain-text templates in English, each with a subject, a
short body and one ask. A command that carries ``subject`` and ``body`` (a message the desk wrote
from the merchant's own template, ``services.messages_compose``) is sent with that text.

- ``kind: zendesk`` (``ZendeskMessages``), connection ``base_url``, ``email``, ``api_key`` (the
  API token, sent as basic auth ``{email}/token:{api_key}``), optionally ``timeout_seconds``:
  ``PUT /api/v2/tickets/{ticket}.json`` with a public comment, the status that fits the template
  and the tags ``recoverydesk``, the template and ``rd_<hash of the key>``. Zendesk has no
  idempotency header, so the ticket is read first: a ticket that already carries the key's tag
  had this message, and the repeat is accepted without a second comment.
- ``kind: smtp`` (``SmtpMessages``), connection ``host``, ``port``, ``sender``, optionally
  ``username``/``password``, ``starttls``, ``timeout_seconds``: one email to ``to``, with a
  ``Message-ID`` derived from the key (and ``X-Recoverydesk-Key``) so a repeat is recognisable.

Errors: 429 (with ``Retry-After``), 5xx, timeouts, connection errors, temporary (4xx) SMTP
replies raise ``OutsideUnavailable``; other HTTP 4xx and permanent (5xx) SMTP replies are a
refusal carrying the system's own message. Secrets are never logged.
"""

from __future__ import annotations

import hashlib
import json
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import httpx
import structlog

from recoverydesk.connectors.http import SharedClient
from recoverydesk.connectors.notify import KEY_HEADER, message_id_for
from recoverydesk.services.clock import Clock, SystemClock
from recoverydesk.services.ports import OutsideAnswer, OutsideCommand, OutsideUnavailable

__all__ = [
    "TEMPLATES",
    "RenderedMessage",
    "SmtpMessages",
    "ZendeskMessages",
    "key_tag",
    "render",
]

log = structlog.get_logger("recoverydesk.connectors.messages")

# name -> (subject, body); placeholders: {order} (the order's ref), {lines} (one per line).
TEMPLATES: dict[str, tuple[str, str]] = {
    "cancellation_confirmed": (
        "Your order {order} is cancelled",
        "Hello,\n\n"
        "We have cancelled your order {order} as you asked. Nothing will be shipped, and any "
        "payment for it goes back to your original payment method.\n\n"
        "If this is not what you wanted, please reply to this message.\n",
    ),
    "partial_cancellation_confirmed": (
        "Part of your order {order} is cancelled",
        "Hello,\n\n"
        "We have cancelled these items from your order {order}:\n{lines}\n\n"
        "The rest of your order ships as planned, and the payment for the cancelled items goes "
        "back to your original payment method.\n\n"
        "If this is not what you wanted, please reply to this message.\n",
    ),
    "return_instructions": (
        "How to return your order {order}",
        "Hello,\n\n"
        "Your order {order} had already left our warehouse, so we could not stop it. You can "
        "still send it back once it arrives, and we will refund you when it reaches us.\n\n"
        "Please reply to this message to get your prepaid return label.\n",
    ),
    "refund_issued": (
        "Your refund for order {order}",
        "Hello,\n\n"
        "We have refunded your order {order} to your original payment method. Banks usually "
        "show it within 5 to 10 business days.\n\n"
        "If you do not see it after 10 business days, please reply to this message.\n",
    ),
    "order_already_shipped": (
        "Your order {order} has already shipped",
        "Hello,\n\n"
        "We are sorry: your order {order} had already shipped before we could cancel it, and "
        "it is on its way to you.\n\n"
        "If you still want to return it, please reply to this message.\n",
    ),
}
# The Zendesk ticket status after the comment: "pending" while the customer has something to do.
_ZENDESK_STATUS = {"return_instructions": "pending", "order_already_shipped": "pending"}


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    subject: str
    body: str


def render(template: str, *, order: str | None, lines: object = None) -> RenderedMessage:
    """The subject and body of a built-in template; ``KeyError`` for an unknown template."""
    subject, body = TEMPLATES[template]
    values = {"order": f"#{order}" if order else "", "lines": _lines_text(lines)}
    return RenderedMessage(
        " ".join(subject.format(**values).split()), body.format(**values).replace("  ", " ")
    )


def _lines_text(lines: object) -> str:
    if not isinstance(lines, list) or not lines:
        return "- the items you asked us to cancel"
    out = []
    for line in lines:
        if isinstance(line, Mapping):
            out.append(f"- {line.get('qty', 1)} x {line.get('sku', '?')}")
        else:
            out.append(f"- {line}")
    return "\n".join(out)


def key_tag(key: str) -> str:
    """The Zendesk tag marking that the message with this idempotency key was posted."""
    return "rd_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def _refused(message: str, code: str, **facts: Any) -> OutsideAnswer:
    return OutsideAnswer(accepted=False, message=message, facts={"code": code, **facts})


def _rendered(command: OutsideCommand, kind: str) -> RenderedMessage | OutsideAnswer:
    if command.action != "send_message":
        return _refused(
            f"the {kind} connector does not do {command.action!r}", "unsupported_action"
        )
    subject, body = command.params.get("subject"), command.params.get("body")
    if isinstance(subject, str) and isinstance(body, str) and subject and body:
        return RenderedMessage(subject, body)  # written by the desk (``services.decisions``)
    template = command.params.get("template")
    if not isinstance(template, str) or template not in TEMPLATES:
        return _refused(f"no message template {template!r}", "unknown_template")
    return render(template, order=command.order_ref, lines=command.params.get("lines"))


def _seconds(configured: object, default: float) -> float:
    if isinstance(configured, int | float) and not isinstance(configured, bool) and configured > 0:
        return float(configured)
    return default


# -- Zendesk -------------------------------------------------------------------------------------


class ZendeskMessages(SharedClient):
    """``OutsideSystems`` posting customer messages as public Zendesk ticket comments."""

    trust_env = False

    def send(self, command: OutsideCommand) -> OutsideAnswer:  # noqa: PLR0911 - one answer per case
        connection = command.connection
        base_url = str(connection.get("base_url") or "").rstrip("/")
        email, token = connection.get("email"), connection.get("api_key")
        if not base_url or not email or not token:
            return _refused(
                "the zendesk connection needs base_url, email and api_key", "connection_incomplete"
            )
        message = _rendered(command, "zendesk")
        if isinstance(message, OutsideAnswer):
            return message
        ticket = str(command.params.get("ticket") or "").strip()
        if not ticket.isdigit():
            return _refused(f"no Zendesk ticket id to post to (got {ticket!r})", "no_ticket")
        url = f"{base_url}/api/v2/tickets/{ticket}.json"
        auth = httpx.BasicAuth(f"{email}/token", str(token))
        timeout = httpx.Timeout(
            _seconds(connection.get("timeout_seconds"), self._timeout), connect=5.0
        )
        template = str(command.params["template"])
        tag = key_tag(command.key)
        found = self._call("GET", url, auth=auth, timeout=timeout)
        if found.status_code >= 400:
            return _zendesk_refusal(found)
        current = _ticket_of(found)
        tags = current.get("tags")
        if isinstance(tags, list) and tag in tags:
            log.info("zendesk message already posted", ticket=ticket, template=template)
            return OutsideAnswer(
                accepted=True,
                reference=ticket,
                facts={"ticket": ticket, "repeat": True, "status": current.get("status")},
            )
        status = _ZENDESK_STATUS.get(template, "solved")
        if command.params.get("decision"):
            status = "pending"  # the customer has a decision to make
        body = {
            "ticket": {
                "comment": {"body": message.body, "public": True},
                "status": status,
                "additional_tags": ["recoverydesk", template, tag],
            }
        }
        updated = self._call("PUT", url, auth=auth, timeout=timeout, body=body)
        if updated.status_code >= 400:
            return _zendesk_refusal(updated)
        answer = _object(updated) or {}
        audit = answer.get("audit")
        reference = audit.get("id") if isinstance(audit, dict) else None
        facts: dict[str, Any] = {"ticket": ticket, "status": status, "template": template}
        return OutsideAnswer(accepted=True, reference=str(reference or ticket), facts=facts)

    def _call(
        self,
        method: str,
        url: str,
        *,
        auth: httpx.BasicAuth,
        timeout: httpx.Timeout,
        body: dict[str, Any] | None = None,
    ) -> httpx.Response:
        headers = {"Accept": "application/json"}
        try:
            response = self._http().request(
                method, url, headers=headers, auth=auth, json=body, timeout=timeout
            )
        except httpx.TimeoutException as error:
            raise OutsideUnavailable(
                f"Zendesk {method}: timed out ({type(error).__name__})"
            ) from None
        except httpx.HTTPError as error:
            raise OutsideUnavailable(f"Zendesk {method}: {type(error).__name__}: {error}") from None
        status = response.status_code
        if status == 429:
            wait = response.headers.get("Retry-After")
            after = f" (retry after {wait}s)" if wait else ""
            raise OutsideUnavailable(f"Zendesk {method}: rate limited, HTTP 429{after}")
        if status >= 500:
            raise OutsideUnavailable(
                f"Zendesk {method}: HTTP {status}: {_zendesk_message(response)}"
            )
        if 300 <= status < 400:
            raise OutsideUnavailable(f"Zendesk {method}: unexpected redirect (HTTP {status})")
        if status >= 400:
            log.info("zendesk refused", method=method, status=status)
        return response


def _object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        value = response.json()
    except (ValueError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _ticket_of(response: httpx.Response) -> dict[str, Any]:
    found = _object(response)
    ticket = found.get("ticket") if found is not None else None
    if not isinstance(ticket, dict):
        raise OutsideUnavailable("Zendesk: the ticket answer is not a ticket")
    return ticket


def _zendesk_message(response: httpx.Response) -> str:
    """Zendesk's own words: ``description`` (with ``details``), ``error`` or the text."""
    found = _object(response) or {}
    error = found.get("error")
    parts: list[str] = []
    if isinstance(error, dict):
        for name in ("title", "message"):
            if isinstance(error.get(name), str):
                parts.append(error[name])
    description = found.get("description")
    if isinstance(description, str) and description.strip():
        parts.append(description.strip())
    elif isinstance(error, str) and error.strip():
        parts.append(error.strip())
    details = found.get("details")
    if isinstance(details, dict):
        for problems in details.values():
            for problem in problems if isinstance(problems, list) else []:
                if isinstance(problem, dict) and isinstance(problem.get("description"), str):
                    parts.append(problem["description"])
    if parts:
        return ": ".join(parts)[:500]
    text = response.text.strip()
    return text[:500] if text else f"HTTP {response.status_code} {response.reason_phrase}"


def _zendesk_refusal(response: httpx.Response) -> OutsideAnswer:
    found = _object(response) or {}
    facts: dict[str, Any] = {"http_status": response.status_code}
    if isinstance(found.get("error"), str):
        facts["code"] = found["error"]
    return OutsideAnswer(accepted=False, message=_zendesk_message(response), facts=facts)


# -- SMTP ----------------------------------------------------------------------------------------


class SmtpMessages:
    """``OutsideSystems`` emailing customer messages over SMTP, one connection per message."""

    def __init__(self, *, timeout: float = 10.0, clock: Clock | None = None) -> None:
        self._timeout = timeout
        self._clock: Clock = clock or SystemClock()

    def send(self, command: OutsideCommand) -> OutsideAnswer:  # noqa: PLR0911 - one answer per case
        connection = command.connection
        host, sender = connection.get("host"), connection.get("sender")
        port = connection.get("port", 25)
        if not host or not sender or not isinstance(port, int) or isinstance(port, bool):
            return _refused(
                "the smtp connection needs host, sender and a numeric port",
                "connection_incomplete",
            )
        rendered = _rendered(command, "smtp")
        if isinstance(rendered, OutsideAnswer):
            return rendered
        to = command.params.get("to")
        if not isinstance(to, str) or "@" not in to:
            return _refused("no customer email address to send to", "no_recipient")
        message = EmailMessage()
        try:
            message["From"] = str(sender)
            message["To"] = to
            message["Subject"] = rendered.subject
            message["Date"] = format_datetime(self._clock.now())
            message["Message-ID"] = message_id_for(command.key)
            message[KEY_HEADER] = command.key
        except ValueError as error:  # CR/LF in a header value: no retry will fix it
            return _refused(f"cannot build the email: {error}", "bad_header")
        message.set_content(rendered.body)
        where = f"SMTP {host}:{port}"
        try:
            refused = self._deliver(connection, str(host), port, message)
        except (smtplib.SMTPException, OSError) as error:
            return _smtp_failure(where, error)
        if refused:
            return _refused(f"{where} refused {sorted(refused)}", "recipient_refused")
        return OutsideAnswer(
            accepted=True,
            reference=str(message["Message-ID"]),
            facts={"to": to, "template": command.params["template"]},
        )

    def _deliver(
        self, connection: Mapping[str, Any], host: str, port: int, message: EmailMessage
    ) -> dict[str, tuple[int, bytes]]:
        timeout = _seconds(connection.get("timeout_seconds"), self._timeout)
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            if connection.get("starttls"):
                smtp.starttls(context=ssl.create_default_context())
            username, password = connection.get("username"), connection.get("password")
            if username and password:
                smtp.login(str(username), str(password))
            return smtp.send_message(message)


def _smtp_failure(where: str, error: smtplib.SMTPException | OSError) -> OutsideAnswer:
    """A permanent (5xx) SMTP reply is a refusal; anything else is raised to retry later."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        text = "; ".join(
            f"{address}: {code} {reply.decode('utf-8', 'replace')}"
            for address, (code, reply) in error.recipients.items()
        )
        if codes and all(code >= 500 for code in codes):
            return _refused(f"{where} refused the recipient: {text}", "recipient_refused")
        raise OutsideUnavailable(f"{where}: recipient deferred: {text}") from None
    if isinstance(error, smtplib.SMTPResponseException):
        reply = error.smtp_error
        text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
        if 500 <= error.smtp_code < 600:
            return _refused(
                f"{where} refused the message: {error.smtp_code} {text}",
                "smtp_refused",
                smtp_code=error.smtp_code,
            )
        raise OutsideUnavailable(f"{where}: {error.smtp_code} {text}") from None
    raise OutsideUnavailable(f"{where}: {type(error).__name__}: {error}") from None
