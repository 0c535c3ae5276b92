"""Commands go to the merchant's configured connector, behind a circuit breaker per connection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from recoverydesk.connectors.outbound import CircuitBreaker, OutsideRouter
from recoverydesk.sandbox.recorders import AcceptingOutside
from recoverydesk.services.clock import SimulatedClock
from recoverydesk.services.ports import OutsideAnswer, OutsideCommand, OutsideUnavailable

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class Flaky:
    """A connector that is down until told otherwise, and counts the calls that reached it."""

    def __init__(self) -> None:
        self.down, self.calls = True, 0

    def send(self, command: OutsideCommand) -> OutsideAnswer:
        self.calls += 1
        if self.down:
            raise OutsideUnavailable("connection refused")
        return OutsideAnswer(accepted=True, reference="re_1")


def command(merchant: int = 1, kind: str | None = "stripe") -> OutsideCommand:
    connection = {"kind": kind, "api_key": "sk_test"} if kind else {}
    return OutsideCommand(merchant, "1001", "payments", "refund", "rd:k", {}, connection)


def test_a_command_without_a_connection_is_the_sandboxs_and_an_unknown_kind_is_refused():
    router = OutsideRouter({"stripe": Flaky()}, AcceptingOutside())
    # no connection configured: accepted by the sandbox, sent nowhere
    assert router.send(command(kind=None)).accepted is True
    # a kind the desk has no connector for: refused with the reason, not pretended done
    answer = router.send(command(kind="paypal"))
    assert answer.accepted is False
    assert "no connector of kind 'paypal'" in (answer.message or "")


def test_the_circuit_opens_after_repeated_failures_and_closes_after_a_good_trial():
    clock = SimulatedClock(T0)
    flaky = Flaky()
    router = OutsideRouter(
        {"stripe": flaky},
        AcceptingOutside(),
        breaker=CircuitBreaker(clock=clock, failures=3, cool_down=timedelta(minutes=1)),
    )
    # given three failures in a row
    for _ in range(3):
        with pytest.raises(OutsideUnavailable):
            router.send(command())
    # when the desk tries again at once: the connector is not called (the circuit is open)
    with pytest.raises(OutsideUnavailable) as error:
        router.send(command())
    assert error.value.code == "circuit_open"
    assert flaky.calls == 3
    # and another merchant's connection to the same kind is not affected
    with pytest.raises(OutsideUnavailable) as other:
        router.send(command(merchant=2))
    assert other.value.code != "circuit_open"
    # when the cool-down has passed and the system is back: one trial call closes the circuit
    clock.advance(timedelta(minutes=1))
    flaky.down = False
    assert router.send(command()).reference == "re_1"
    assert router.send(command()).accepted is True
    assert flaky.calls == 6
