"""Escalation notifications out of the desk: email over SMTP and chat over incoming webhooks.

Both adapters implement the ports in ``recoverydesk.services.notifications`` and carry the
notification ``key`` so receivers can drop repeats: email as a deterministic ``Message-ID`` (and
``X-Recoverydesk-Key``), chat as the ``Idempotency-Key`` header. Every failure is raised as
``NotificationFailed`` (the job retries with backoff); failures a retry cannot fix are raised as
its subclass ``PermanentNotificationFailure``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
from datetime import date, datetime
from decimal import Decimal
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote
from uuid import UUID

import httpx

from recoverydesk.services.clock import Clock, SystemClock
from recoverydesk.services.notifications import Notification, NotificationFailed

__all__ = [
    "KEY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "PermanentNotificationFailure",
    "SmtpEmailSender",
    "WebhookChatSender",
    "message_id_for",
]

KEY_HEADER = "X-Recoverydesk-Key"
SIGNATURE_HEADER = "X-Recoverydesk-Signature"
TIMESTAMP_HEADER = "X-Recoverydesk-Timestamp"
_MESSAGE_ID_DOMAIN = "recoverydesk"
# 7bit: non-ASCII bodies go quoted-printable/base64, so any SMTP server accepts them;
# 998 (the RFC 5322 limit): long keys stay literal instead of becoming encoded words.
_EMAIL_POLICY = policy.SMTP.clone(cte_type="7bit", max_line_length=998)
_RETRYABLE_CLIENT_ERRORS = frozenset({408, 429})


class PermanentNotificationFailure(NotificationFailed):
    """The channel refused the notification for good (bad request, unknown hook): do not retry."""


def message_id_for(key: str) -> str:
    """The email ``Message-ID`` for a notification key: ``<percent-encoded key@recoverydesk>``.

    Deterministic and injective: every character outside ``[A-Za-z0-9_~-]`` (including ``%``
    and ``.``) is percent-encoded, so the local part is valid RFC 5322 dot-atom text.
    """
    local = quote(key, safe="").replace(".", "%2E")
    return f"<{local}@{_MESSAGE_ID_DOMAIN}>"


class SmtpEmailSender:
    """``EmailSender`` over SMTP (optionally STARTTLS and login), one connection per message."""

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = 10.0,
        clock: Clock | None = None,
    ) -> None:
        if (username is None) != (password is None):
            raise ValueError("SMTP username and password go together: give both or neither")
        self._host = host
        self._port = port
        self._sender = sender
        self._credentials = (
            (username, password) if username is not None and password is not None else None
        )
        self._starttls = starttls
        self._timeout = timeout
        self._clock: Clock = clock or SystemClock()

    def send(self, notification: Notification) -> None:
        """Send to ``notification.recipients``; nothing to do when there are none."""
        if not notification.recipients:
            return
        message = self._compose(notification)
        try:
            refused = self._deliver(message)
        except (smtplib.SMTPException, OSError) as exc:
            raise NotificationFailed(
                f"SMTP {self._host}:{self._port} failed for {notification.key!r}: {_reason(exc)}"
            ) from exc
        if refused:
            # Delivered to the others; a retry re-sends with the same Message-ID, so they dedupe.
            raise NotificationFailed(
                f"SMTP {self._host}:{self._port} refused recipients for "
                f"{notification.key!r}: {sorted(refused)}"
            )

    def _compose(self, notification: Notification) -> EmailMessage:
        _require_key(notification)
        message = EmailMessage(policy=_EMAIL_POLICY)
        try:
            message["From"] = self._sender
            message["To"] = ", ".join(notification.recipients)
            message["Subject"] = " ".join(notification.subject.split())
            message["Date"] = format_datetime(self._clock.now())
            message["Message-ID"] = message_id_for(notification.key)
            message[KEY_HEADER] = notification.key
        except ValueError as exc:  # CR/LF in a header value: no retry will fix it
            raise PermanentNotificationFailure(
                f"cannot build email for {notification.key!r}: {exc}"
            ) from exc
        message.set_content(notification.body)
        return message

    def _deliver(self, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
            if self._starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self._credentials is not None:
                smtp.login(*self._credentials)
            return smtp.send_message(message)


class WebhookChatSender:
    """``ChatSender`` over incoming webhooks (Slack, Teams and our own receiver read ``text``)."""

    def __init__(
        self, client: httpx.Client, *, secret: str | None = None, clock: Clock | None = None
    ) -> None:
        self._client = client
        self._secret = secret.encode("utf-8") if secret is not None else None
        self._clock: Clock = clock or SystemClock()

    def post(self, url: str, notification: Notification) -> None:
        """POST the notification as JSON; raise ``NotificationFailed`` unless answered 2xx."""
        _require_key(notification)
        body = _chat_payload(notification)
        headers = self._headers(notification, body)
        where = _redacted(url)
        try:
            response = self._client.post(url, content=body, headers=headers)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise PermanentNotificationFailure(f"chat webhook URL is invalid: {exc}") from exc
        except httpx.HTTPError as exc:
            raise NotificationFailed(
                f"chat webhook {where} unreachable for {notification.key!r}: {_reason(exc)}"
            ) from exc
        _check_answer(response, where, notification.key)

    def _headers(self, notification: Notification, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Idempotency-Key": notification.key}
        if self._secret is not None:
            digest = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
            headers[SIGNATURE_HEADER] = f"sha256={digest}"
            headers[TIMESTAMP_HEADER] = str(int(self._clock.now().timestamp()))
        return headers


def _chat_payload(notification: Notification) -> bytes:
    """The exact JSON body posted to a chat webhook (UTF-8, compact, keys sorted)."""
    payload = {
        "text": f"{notification.subject}\n{notification.body}",
        "key": notification.key,
        "subject": notification.subject,
        "facts": notification.facts,
    }
    try:
        text = json.dumps(payload, default=_json_value, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:  # facts that cannot be JSON: no retry will fix it
        raise PermanentNotificationFailure(
            f"cannot encode chat payload for {notification.key!r}: {exc}"
        ) from exc
    return text.encode("utf-8")


def _json_value(value: object) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _check_answer(response: httpx.Response, where: str, key: str) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    detail = f"chat webhook {where} answered {status} for {key!r}: {response.text[:200]!r}"
    if 400 <= status < 500 and status not in _RETRYABLE_CLIENT_ERRORS:
        raise PermanentNotificationFailure(detail)
    raise NotificationFailed(detail)


def _require_key(notification: Notification) -> None:
    if not notification.key:
        raise PermanentNotificationFailure("notification has no key (idempotency key required)")


def _redacted(url: str) -> str:
    """Scheme, host and port only: webhook paths and queries carry the hook's secret token."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "<invalid url>"
    port = f":{parsed.port}" if parsed.port is not None else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
