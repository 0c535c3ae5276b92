"""Recording fakes of the outside systems for replay: they accept every command and keep it."""

from __future__ import annotations

from typing import Any

from recoverydesk.services.clock import Clock
from recoverydesk.services.notifications import Notification


class RecordedActions:
    """Every command the desk sent out, in order, as ``actions.json`` lists them."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.actions: list[dict[str, Any]] = []

    def record(
        self, *, system: str, action: str, order_ref: str | None, key: str, **params: Any
    ) -> None:
        self.actions.append(
            {
                "at": self._clock.now().isoformat(),
                "order_ref": order_ref,
                "system": system,
                "action": action,
                "params": params,
                "idempotency_key": key,
                "result": "accepted",
            }
        )


class RecordingEmail:
    def __init__(self, actions: RecordedActions) -> None:
        self._actions = actions

    def send(self, notification: Notification) -> None:
        self._actions.record(
            system="email",
            action="notify",
            order_ref=notification.facts.get("order_ref"),
            key=notification.key,
            recipients=list(notification.recipients),
            subject=notification.subject,
            stage=notification.facts.get("stage"),
            clock=notification.facts.get("clock"),
        )


class RecordingChat:
    def __init__(self, actions: RecordedActions) -> None:
        self._actions = actions

    def post(self, url: str, notification: Notification) -> None:
        self._actions.record(
            system="chat",
            action="notify",
            order_ref=notification.facts.get("order_ref"),
            key=notification.key,
            url=url,
            subject=notification.subject,
            stage=notification.facts.get("stage"),
            clock=notification.facts.get("clock"),
        )
