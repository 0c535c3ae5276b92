"""An emulator's outgoing webhooks: signed as the vendor signs them, sent when due, kept until
the desk takes them.

An emulator ``put``s a delivery (its body as the vendor would send it, the vendor's extra headers
such as ``X-Shopify-Topic``, and when it is due). Nothing is sent while the emulator serves a
request: ``deliver_due(now)`` (tests call it, for determinism; a demo pumps it from a thread)
posts every due delivery to ``{desk_url}/webhooks/{provider}/{merchant}``, oldest first, signed
at sending time with ``connectors.signatures.sign`` (so timestamps are fresh, as a vendor's
retry is). A delivery the desk does not answer 2xx stays and is sent again with the same
delivery id, as vendors retry.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from recoverydesk.connectors.signatures import sign

__all__ = ["DeliveryResult", "Outgoing", "WebhookOutbox"]


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    delivery_id: str
    topic: str
    status_code: int | None  # None when the desk could not be reached
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(slots=True)
class Outgoing:
    delivery_id: str
    topic: str
    due_at: datetime
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    attempts: int = 0


def _wall_clock() -> datetime:
    return datetime.now(UTC)


class WebhookOutbox:
    """The deliveries of one emulator (one ``provider``) to one desk merchant."""

    def __init__(
        self,
        provider: str,
        *,
        clock: Callable[[], datetime] = _wall_clock,
        http: httpx.Client | None = None,
    ) -> None:
        self.provider = provider
        self._clock = clock
        self._http = http
        self._lock = threading.Lock()
        self._waiting: list[Outgoing] = []
        self._sent: list[Outgoing] = []
        self._target: tuple[str, str] | None = None

    def aim(self, desk_url: str, merchant: str, secret: str) -> None:
        """Send to this desk's webhook endpoint for ``merchant``, signed with ``secret``."""
        url = f"{desk_url.rstrip('/')}/webhooks/{self.provider}/{merchant}"
        with self._lock:
            self._target = (url, secret)

    def put(
        self,
        delivery_id: str,
        topic: str,
        body: Mapping[str, Any] | bytes,
        *,
        due_at: datetime | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Queue one delivery (``topic`` names it in results; ``headers`` are the vendor's
        own, added to the signature headers)."""
        raw = body if isinstance(body, bytes) else json.dumps(body, default=str).encode()
        outgoing = Outgoing(delivery_id, topic, due_at or self._clock(), raw, dict(headers or {}))
        with self._lock:
            self._waiting.append(outgoing)

    @property
    def waiting(self) -> list[Outgoing]:
        with self._lock:
            return list(self._waiting)

    @property
    def sent(self) -> list[Outgoing]:
        """Every delivery the desk took (2xx), in order."""
        with self._lock:
            return list(self._sent)

    def deliver_due(self, now: datetime | None = None) -> list[DeliveryResult]:
        moment = now or self._clock()
        with self._lock:
            due = sorted(
                (o for o in self._waiting if o.due_at <= moment),
                key=lambda o: (o.due_at, o.delivery_id),
            )
            target = self._target
        results = []
        for outgoing in due:
            result = self._post(outgoing, target)
            results.append(result)
            with self._lock:
                outgoing.attempts += 1
                if result.ok and outgoing in self._waiting:
                    self._waiting.remove(outgoing)
                    self._sent.append(outgoing)
        return results

    def _post(self, outgoing: Outgoing, target: tuple[str, str] | None) -> DeliveryResult:
        if target is None:
            return DeliveryResult(outgoing.delivery_id, outgoing.topic, None, "no desk configured")
        url, secret = target
        headers = sign(
            self.provider,
            body=outgoing.body,
            secret=secret,
            now=_wall_clock(),
            delivery_id=outgoing.delivery_id,
        )
        headers = {**headers, **outgoing.headers, "Content-Type": "application/json"}
        try:
            if self._http is not None:
                answer = self._http.post(url, content=outgoing.body, headers=headers)
            else:
                with httpx.Client(timeout=10.0) as client:
                    answer = client.post(url, content=outgoing.body, headers=headers)
        except httpx.HTTPError as error:
            return DeliveryResult(outgoing.delivery_id, outgoing.topic, None, type(error).__name__)
        text = None if answer.is_success else answer.text[:500]
        return DeliveryResult(outgoing.delivery_id, outgoing.topic, answer.status_code, text)
