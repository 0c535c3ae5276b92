"""Recording fakes of the outside systems for replay: they accept every command and keep it."""

from __future__ import annotations

from typing import Any

from recoverydesk.services.clock import Clock
from recoverydesk.services.notifications import Notification
from recoverydesk.services.ports import OutsideAnswer, OutsideCommand


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


class RecordingOutside:
    """The outside systems in replay: every command is accepted and recorded; nothing answers
    on its own (an acknowledgment, a refund, a shipment comes only from the stream)."""

    def __init__(self, actions: RecordedActions) -> None:
        self._actions = actions

    def send(self, command: OutsideCommand) -> OutsideAnswer:
        self._actions.record(
            system=command.system,
            action=command.action,
            order_ref=command.order_ref,
            key=command.key,
            **command.params,
        )
        return OutsideAnswer(accepted=True)


class AcceptingOutside:
    """The outside systems until a merchant's connectors are configured: every command is
    accepted (and logged in ``outbound_calls`` by the desk), nothing is sent anywhere."""

    def send(self, command: OutsideCommand) -> OutsideAnswer:
        return OutsideAnswer(accepted=True, facts={"sandbox": True})
