"""The outside systems of the running desk: each command goes to the connector its merchant
configured for that system (``connectors.outbound.<system>.kind`` in the merchant's file).

A system with no connection configured is the sandbox's: the command is accepted and not sent
anywhere (``sandbox.recorders.AcceptingOutside``), and the desk logs it in ``outbound_calls``
as it logs every call. A connection of a kind the desk has no connector for is refused, with
the reason, so the workflow waits in ``exception`` instead of pretending it was done.

Each merchant's connection has a circuit breaker: after ``failures`` calls in a row that the
system could not answer (``OutsideUnavailable``), calls fail at once for ``cool_down`` (the job
is retried later with backoff and jitter, as any failed job is), then one trial call decides.
A refusal is an answer, not a failure: it does not count.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from recoverydesk.services.clock import Clock, SystemClock
from recoverydesk.services.ports import (
    OutsideAnswer,
    OutsideCommand,
    OutsideSystems,
    OutsideUnavailable,
)

CircuitKey = tuple[int, str, str]  # merchant, system, connector kind


@dataclass(slots=True)
class _Circuit:
    failures: int = 0
    open_until: datetime | None = None


class CircuitBreaker:
    """Per (merchant, system, kind): closed, open for ``cool_down``, then half-open."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        failures: int = 5,
        cool_down: timedelta = timedelta(seconds=60),
    ) -> None:
        self._clock = clock or SystemClock()
        self._limit, self._cool_down = failures, cool_down
        self._circuits: dict[CircuitKey, _Circuit] = {}
        self._lock = threading.Lock()

    def call(
        self, key: CircuitKey, connector: OutsideSystems, command: OutsideCommand
    ) -> OutsideAnswer:
        with self._lock:
            circuit = self._circuits.setdefault(key, _Circuit())
            if circuit.open_until is not None and self._clock.now() < circuit.open_until:
                raise OutsideUnavailable(
                    f"{command.system} ({key[2]}) failed {circuit.failures} times in a row: "
                    f"not called again before {circuit.open_until.isoformat()}",
                    code="circuit_open",
                )
        try:
            answer = connector.send(command)
        except OutsideUnavailable:
            with self._lock:
                circuit.failures += 1
                if circuit.failures >= self._limit:
                    circuit.open_until = self._clock.now() + self._cool_down
            raise
        with self._lock:
            circuit.failures, circuit.open_until = 0, None
        return answer


class OutsideRouter:
    def __init__(
        self,
        connectors: Mapping[str, OutsideSystems],
        fallback: OutsideSystems,
        *,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._connectors, self._fallback = dict(connectors), fallback
        self._breaker = breaker or CircuitBreaker()

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
        return self._breaker.call(
            (command.merchant_id, command.system, str(kind)), connector, command
        )
