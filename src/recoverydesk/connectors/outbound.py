"""The outside systems of the running desk: each command goes to the connector its merchant
configured for that system (``connectors.outbound.<system>.kind`` in the merchant's file).

A system with no connection configured is the sandbox's: the command is accepted and not sent
anywhere (``sandbox.recorders.AcceptingOutside``), and the desk logs it in ``outbound_calls``
as it logs every call. A connection of a kind the desk has no connector for is refused, with
the reason, so the workflow waits in ``exception`` instead of pretending it was done.
"""

from __future__ import annotations

from collections.abc import Mapping

from recoverydesk.services.ports import OutsideAnswer, OutsideCommand, OutsideSystems


class OutsideRouter:
    def __init__(self, connectors: Mapping[str, OutsideSystems], fallback: OutsideSystems) -> None:
        self._connectors, self._fallback = dict(connectors), fallback

    def send(self, command: OutsideCommand) -> OutsideAnswer:
        kind = command.connection.get("kind")
        if not kind:
            return self._fallback.send(command)
        connector = self._connectors.get(str(kind))
        if connector is None:
            known = ", ".join(sorted(self._connectors)) or "none yet"
            return OutsideAnswer(
                accepted=False, message=f"no connector of kind {kind!r} (known: {known})"
            )
        return connector.send(command)
