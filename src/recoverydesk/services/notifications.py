"""The notification port: escalation warnings and breaches sent by email or chat webhook.

A notification is built once, with a stable ``key`` (the idempotency key: the escalation it
belongs to), and sent after commit by a durable job. A job that is retried after a worker died
sends the same key again; receivers (and our own chat receiver) drop repeats by that key, email
carries it as the ``Message-ID``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Notification:
    key: str  # idempotency key, e.g. "esc:acme:42:first_touch:breach"
    subject: str
    body: str
    recipients: tuple[str, ...] = ()  # email addresses (email channel)
    facts: dict[str, Any] = field(default_factory=dict)  # structured data for chat webhooks


class NotificationFailed(Exception):
    """A channel refused or could not be reached; the job retries with backoff."""


class EmailSender(Protocol):
    def send(self, notification: Notification) -> None: ...


class ChatSender(Protocol):
    def post(self, url: str, notification: Notification) -> None: ...
