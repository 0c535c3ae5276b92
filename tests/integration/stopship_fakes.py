"""A fake of the merchant's outside systems for the stop-ship tests: a payment provider that
behaves like a real one, a warehouse that answers status questions truthfully, an ERP and the
customer messaging channels. It is thread-safe, and it records what the money invariants of
STOPSHIP.md need to be checked against (what it really did, not what the desk believes).

The payment provider:

- dedupes by idempotency key: the same key gives the same answer (the same refund), never a
  second refund; the same key with other parameters is a client error (recorded as a violation);
- refuses a refund beyond what it captured for the order, less what it already refunded through
  its API (an *overdraft*, recorded: the desk must never ask for one);
- refuses to void (or reduce) an authorization that was captured (recorded: the desk must never
  send one);
- can be switched to refuse everything, or to be unreachable (``OutsideUnavailable``).

Refunds made elsewhere (storefront admin, helpdesk app) do not go through this provider's API: the
provider cannot stop the desk from refunding that money again, only the desk's ledger can. That is
what makes invariant (a) able to fail.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from recoverydesk.domain.money import ZERO
from recoverydesk.services.clock import Clock
from recoverydesk.services.ports import OutsideAnswer, OutsideCommand, OutsideUnavailable

OK, REFUSE, DOWN = "ok", "refuse", "down"
CONFIRMATIONS = frozenset({"cancellation_confirmed", "partial_cancellation_confirmed"})
STOP_STEPS = frozenset({"wms_hold", "wms_cancel"})
# a workflow's command key: stopship:{merchant}:{cancellation}:{step}:{attempt}
_WORKFLOW_KEY = re.compile(r"^stopship:[^:]+:(\d+):([a-z_]+):(\d+)$")


def group_of(system: str) -> str:
    """The switchable group a system belongs to."""
    return "messages" if system in ("email", "helpdesk") else system


@dataclass(frozen=True, slots=True)
class ProviderRefund:
    reference: str
    order_ref: str
    key: str
    amount: Decimal
    at: datetime


@dataclass(slots=True)
class StopRequest:
    """A hold or cancel the warehouse received for one attempt of one workflow."""

    order_ref: str
    cancellation: int
    attempt: int
    at: datetime
    answer: str | None = None  # acknowledged | rejected, once the warehouse answered


@dataclass(slots=True)
class FakeOutside:
    clock: Clock
    modes: dict[str, str] = field(default_factory=dict)  # group -> ok | refuse | down
    vague_wms: bool = False  # the warehouse answers a status question with "unknown"
    authorized: dict[str, Decimal] = field(default_factory=dict)
    captured: dict[str, Decimal] = field(default_factory=dict)
    voided: set[str] = field(default_factory=set)
    refunds: list[ProviderRefund] = field(default_factory=list)
    warehouse: dict[str, str] = field(default_factory=dict)  # order -> true fulfilment state
    released: set[str] = field(default_factory=set)  # orders the warehouse ever had
    stops: dict[tuple[int, int], StopRequest] = field(default_factory=dict)
    messages: list[tuple[str, str, str]] = field(default_factory=list)  # order, template, key
    calls: list[OutsideCommand] = field(default_factory=list)  # every call, repeats included
    violations: list[str] = field(default_factory=list)
    _answers: dict[str, tuple[dict[str, Any], OutsideAnswer]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- what the test does at the provider and the warehouse ---------------------------------

    def authorize(self, ref: str, amount: Decimal) -> None:
        with self._lock:
            self.authorized[ref] = amount

    def capture(self, ref: str) -> bool:
        """Capture the whole authorization; a voided one cannot be captured."""
        with self._lock:
            if ref in self.voided or self.captured.get(ref, ZERO) > ZERO:
                return False
            self.captured[ref] = self.authorized.get(ref, ZERO)
            return self.captured[ref] > ZERO

    def refunded_by_api(self, ref: str) -> Decimal:
        with self._lock:
            return sum((r.amount for r in self.refunds if r.order_ref == ref), ZERO)

    def unanswered_stops(self) -> list[StopRequest]:
        with self._lock:
            return [s for _, s in sorted(self.stops.items()) if s.answer is None]

    # -- the port -------------------------------------------------------------------------------

    def send(self, command: OutsideCommand) -> OutsideAnswer:
        with self._lock:
            self.calls.append(command)
            mode = self.modes.get(group_of(command.system), OK)
            if mode == DOWN:
                raise OutsideUnavailable(f"{command.system} is unreachable (connector failure)")
            if command.action == "refund_lookup":  # the provider's search by idempotency key
                made = [r for r in self.refunds if r.key == command.params["intent"]]
                if made:
                    return OutsideAnswer(True, reference=made[0].reference)
                return OutsideAnswer(False, message="no refund with that key")
            known = self._answers.get(command.key)
            if known is not None:
                params, answer = known
                if params != {"action": command.action, **command.params}:
                    self.violations.append(
                        f"key {command.key} reused with other parameters: {params} then "
                        f"{command.params}"
                    )
                    return OutsideAnswer(False, message="idempotency key reused")
                return answer
            if mode == REFUSE:
                answer = OutsideAnswer(False, message=f"{command.system} refused (switched)")
            else:
                answer = self._do(command)
            self._answers[command.key] = ({"action": command.action, **command.params}, answer)
            return answer

    def _do(self, command: OutsideCommand) -> OutsideAnswer:
        ref = command.order_ref or ""
        action = command.action
        if command.system == "payments":
            amount = Decimal(str(command.params.get("amount", "0")))
            captured = self.captured.get(ref, ZERO)
            if action == "refund":
                mine = sum((r.amount for r in self.refunds if r.order_ref == ref), ZERO)
                if amount > captured - mine:
                    self.violations.append(
                        f"overdraft: refund {amount} on {ref} asked with {captured} captured and "
                        f"{mine} already refunded by the provider (key {command.key})"
                    )
                    return OutsideAnswer(False, message="amount exceeds the captured balance")
                refund = ProviderRefund(
                    f"re_{len(self.refunds) + 1:04d}", ref, command.key, amount, self.clock.now()
                )
                self.refunds.append(refund)
                return OutsideAnswer(True, reference=refund.reference)
            if action in ("void", "reduce_authorization"):
                if captured > ZERO:
                    self.violations.append(
                        f"{action} sent for {ref} while {captured} was captured (key {command.key})"
                    )
                    return OutsideAnswer(False, message="a captured payment cannot be voided")
                if action == "void":
                    self.voided.add(ref)
                return OutsideAnswer(True, reference=f"void_{len(self._answers) + 1:04d}")
            return OutsideAnswer(False, message=f"unknown payment action {action}")
        if command.system == "wms":
            if action == "wms_status":
                status = "unknown" if self.vague_wms else self.warehouse.get(ref, "not_released")
                return OutsideAnswer(True, facts={"status": status})
            found = _WORKFLOW_KEY.match(command.key)
            if found and found.group(2) in STOP_STEPS:
                slot = (int(found.group(1)), int(found.group(3)))
                if slot not in self.stops:
                    self.stops[slot] = StopRequest(ref, slot[0], slot[1], self.clock.now())
            return OutsideAnswer(True, reference=f"wms-{len(self._answers) + 1}")
        if action == "send_message":
            template = str(command.params.get("template"))
            self.messages.append((ref, template, command.key))
            if template in CONFIRMATIONS and not self._stop_confirmed(ref, command.key):
                self.violations.append(
                    f"{template} sent for {ref} before the stop was confirmed (key {command.key}; "
                    f"warehouse {self.warehouse.get(ref)}, stops "
                    f"{[s for s in self.stops.values() if s.order_ref == ref]})"
                )
        return OutsideAnswer(True, reference=f"{command.system}-{len(self._answers) + 1}")

    def _stop_confirmed(self, ref: str, key: str) -> bool:
        """Ground truth: the order never reached the warehouse, or the warehouse acknowledged a
        stop it received for this very workflow."""
        if ref not in self.released:
            return True
        found = _WORKFLOW_KEY.match(key)
        if found is None:
            return False
        cancellation = int(found.group(1))
        return any(
            s.cancellation == cancellation and s.answer == "acknowledged"
            for s in self.stops.values()
        )
