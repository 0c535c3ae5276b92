"""Drift detection (F3): rules that notice contradictions between systems and open cases.

Each rule has a stable snake_case name; a ``drift`` case carries it as ``case.rule`` and in
``case.data["rule"]``, and ``case.data["evidence"]`` names the events on both sides.

State rules compare what the order's events say. ``casebook.step`` runs them after each event is
folded in, in ``sort_key`` order, and a rule opens a case when the event makes it start to hold,
so any arrival order gives the same cases. One exception: when a late event shows that a
contradiction the desk already opened a case for never stood (a return scanned before the refund),
the case is kept for the audit trail and closed (``WITHDRAWN``, see ``casebook.sync_cases``).

- ``cancelled_but_shipped``: the whole order is cancelled and a shipment exists (shipped or
  delivered), whichever came first. Stays open for a human (the ERP and the warehouse disagree).
- ``refund_while_shipped`` (refund leakage): the refunds reach what was paid (the captured amount,
  else the order value when no capture was seen) while a shipment exists, and no return was
  received or is in flight (a delivery exception ``returned_to_sender``). A partial refund on a
  shipped order is a concession or a partial cancel, not drift. Closed ``returned`` by
  ``return.received``.
- ``double_refund``: two refunds (distinct refund ids) for one intent: two carry the same
  ``data.intent``, or there is more than one refund id and together they exceed what was paid.
  The same refund id reported twice (storefront and PSP) is one refund. Stays open for a human.

Timed rules are about something that did not happen in time. Whenever an order is folded,
``due_checks`` names the checks it needs (a durable timer each, with a deterministic key); at the
due time ``recheck`` looks at the order as it was then, and if the contradiction still stands the
desk ingests a ``drift.detected`` event (source ``desk``) that opens the case. The fold checks that
event again (``raised``): if a late event shows the contradiction had ended before the due time,
the case is opened and closed at once, as an exception raised on an already settled order is.

- ``captured_on_cancelled``: the whole order is cancelled, nothing shipped, and captured money is
  not refunded ``refund_after_cancel_within`` after the later of the cancel and the last capture.
  Closed ``refunded`` once the refunds reach the captured amount.
- ``cancel_not_acknowledged``: ``stopship_ack_within`` after the first ``cancel.requested`` the
  warehouse has not answered while the order is at the warehouse (released, picking or packed).
  A ``stopship.rejected`` is an answer too: the stop-ship workflow owns a rejection, so it opens
  nothing here and closes an open case ``denied``; ``stopship.acknowledged`` closes it
  ``cancelled``. An order that was never released needs no warehouse stop (STOPSHIP.md step 4).
- ``hold_too_old``: a hold is still active ``hold_older_than[hold_type]`` (else ``["default"]``)
  after it was placed, on an order neither cancelled nor shipped. Closed ``released`` when that
  hold is released, ``cancelled`` or ``shipped`` when the order is.

``unfulfilled_past_cutoff`` is the name on the ``late_shipment_risk`` case that the ship-by timer
opens (``fulfillment.ship_by_missed``); it keeps its own category.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from recoverydesk.domain.cases import Outcome, ReasonCode
from recoverydesk.domain.events import CanonicalEvent, EventType
from recoverydesk.domain.money import ZERO
from recoverydesk.domain.orders import FulfillmentStatus, OrderView, RefundSeen


class DriftRule(StrEnum):
    CANCELLED_BUT_SHIPPED = "cancelled_but_shipped"
    REFUND_WHILE_SHIPPED = "refund_while_shipped"
    DOUBLE_REFUND = "double_refund"
    CAPTURED_ON_CANCELLED = "captured_on_cancelled"
    CANCEL_NOT_ACKNOWLEDGED = "cancel_not_acknowledged"
    HOLD_TOO_OLD = "hold_too_old"


TIMED_RULES = frozenset(
    {DriftRule.CAPTURED_ON_CANCELLED, DriftRule.CANCEL_NOT_ACKNOWLEDGED, DriftRule.HOLD_TOO_OLD}
)
UNFULFILLED_PAST_CUTOFF = "unfulfilled_past_cutoff"
CHECK_JOB = "drift.check"  # the kind of the timer that runs a timed rule's due check
AT_THE_WAREHOUSE = frozenset(
    {FulfillmentStatus.RELEASED, FulfillmentStatus.PICKING, FulfillmentStatus.PACKED}
)


Resolution = tuple[Outcome, ReasonCode | None]


@dataclass(frozen=True, slots=True)
class Finding:
    """A contradiction a rule found: the events on both sides, and facts worth keeping."""

    rule: DriftRule
    evidence: Mapping[str, str]
    facts: Mapping[str, str] = field(default_factory=dict)

    def as_data(self) -> dict[str, Any]:
        """The drift case's ``data`` (and the ``drift.detected`` event's)."""
        return {**self.facts, "rule": self.rule.value, "evidence": dict(self.evidence)}


def _named(**event_ids: str | None) -> dict[str, str]:
    return {name: event_id for name, event_id in event_ids.items() if event_id}


def _paid(order: OrderView) -> Decimal | None:
    """What the customer paid: the captured amount, else the order value (no capture seen)."""
    captured = order.payment.captured
    return captured if captured > ZERO else order.value


# --- state rules ---------------------------------------------------------------------------------


def _cancelled_but_shipped(order: OrderView) -> Finding | None:
    if not (order.cancelled and order.shipped):
        return None
    seen = order.evidence
    evidence = _named(cancelled_by=seen.cancelled_by, shipped_by=seen.shipped_by)
    return Finding(DriftRule.CANCELLED_BUT_SHIPPED, evidence)


def _refund_while_shipped(order: OrderView) -> Finding | None:
    seen, refunded, paid = order.evidence, order.payment.refunded, _paid(order)
    if not order.shipped or refunded <= ZERO or paid is None or refunded < paid:
        return None
    if seen.returned_by or seen.return_in_flight_by:
        return None
    refunded_by = _sightings(order)[-1].event_id if seen.refunds else None
    evidence = _named(refunded_by=refunded_by, shipped_by=seen.shipped_by)
    facts = {"refunded": str(refunded), "paid": str(paid)}
    return Finding(DriftRule.REFUND_WHILE_SHIPPED, evidence, facts)


def _double_refund(order: OrderView) -> Finding | None:
    sightings = _sightings(order)
    if len(sightings) < 2:
        return None
    pair = _same_intent(sightings)
    if pair is not None:
        first, second = pair
        facts = {"intent": str(second.intent)}
    else:
        paid, refunded = _paid(order), order.payment.refunded
        if paid is None or refunded <= paid:
            return None
        first, second = sightings[0], sightings[-1]
        facts = {"refunded": str(refunded), "paid": str(paid)}
    evidence = {"first_refund": first.event_id, "second_refund": second.event_id}
    return Finding(DriftRule.DOUBLE_REFUND, evidence, facts)


def _sightings(order: OrderView) -> list[RefundSeen]:
    """The order's refunds, each as first reported, in fold order."""
    return list(order.evidence.refunds.values())


def _same_intent(sightings: list[RefundSeen]) -> tuple[RefundSeen, RefundSeen] | None:
    first_of: dict[str, RefundSeen] = {}
    for sighting in sightings:
        if sighting.intent is None:
            continue
        if sighting.intent in first_of:
            return first_of[sighting.intent], sighting
        first_of[sighting.intent] = sighting
    return None


STATE_RULES: dict[DriftRule, Callable[[OrderView], Finding | None]] = {
    DriftRule.CANCELLED_BUT_SHIPPED: _cancelled_but_shipped,
    DriftRule.REFUND_WHILE_SHIPPED: _refund_while_shipped,
    DriftRule.DOUBLE_REFUND: _double_refund,
}


def standing(order: OrderView) -> frozenset[DriftRule]:
    """The state rules whose contradiction holds on the order now."""
    if not order.has_drift_sides:
        return frozenset()
    return frozenset(rule for rule, check in STATE_RULES.items() if check(order) is not None)


def findings(order: OrderView, before: frozenset[DriftRule]) -> list[Finding]:
    """The state rules the last event folded into ``order`` made start to hold; ``before`` is
    ``standing(order)`` from just before that event."""
    if not order.has_drift_sides:
        return []
    found = (check(order) for rule, check in STATE_RULES.items() if rule not in before)
    return [finding for finding in found if finding is not None]


# --- timed rules ---------------------------------------------------------------------------------


class DriftLimits(Protocol):
    """The merchant's drift limits (``policy.drift`` of its configuration)."""

    @property
    def hold_older_than(self) -> Mapping[str, timedelta]: ...

    @property
    def stopship_ack_within(self) -> timedelta: ...

    @property
    def refund_after_cancel_within(self) -> timedelta: ...


DEFAULT_HOLD_LIMIT = timedelta(hours=48)


@dataclass(frozen=True, slots=True)
class DueCheck:
    """A timed rule to look at again at ``due_at``; ``anchor`` is the moment it counts from."""

    rule: DriftRule
    order_ref: str
    anchor: datetime
    due_at: datetime
    hold_type: str | None = None

    @property
    def key(self) -> str:
        """The timer's idempotency key: the same order state asks for the same timer."""
        kind = f"{self.hold_type}:" if self.hold_type else ""
        return f"drift:{self.rule.value}:{self.order_ref}:{kind}{self.anchor.isoformat()}"

    @property
    def payload(self) -> dict[str, str]:
        body = {
            "order_ref": self.order_ref,
            "rule": self.rule.value,
            "due_at": self.due_at.isoformat(),
        }
        if self.hold_type is not None:
            body.update(hold_type=self.hold_type, placed_at=self.anchor.isoformat())
        return body


def due_checks(order: OrderView, limits: DriftLimits) -> list[DueCheck]:
    """The timed checks the order needs now (asking again for one is harmless: same key)."""
    checks = []
    anchor = _refund_anchor(order)
    if anchor is not None:
        due = anchor + limits.refund_after_cancel_within
        checks.append(DueCheck(DriftRule.CAPTURED_ON_CANCELLED, order.ref, anchor, due))
    requested = order.cancel_requested_at
    if requested is not None and not order.evidence.stopship_answered_by and not order.shipped:
        due = requested + limits.stopship_ack_within
        checks.append(DueCheck(DriftRule.CANCEL_NOT_ACKNOWLEDGED, order.ref, requested, due))
    for hold in order.holds.values() if _unsettled(order) else ():
        if hold.active:
            limit = hold_limit(limits, hold.hold_type)
            due = hold.placed_at + limit
            checks.append(
                DueCheck(DriftRule.HOLD_TOO_OLD, order.ref, hold.placed_at, due, hold.hold_type)
            )
    return checks


def hold_limit(limits: DriftLimits, hold_type: str) -> timedelta:
    table = limits.hold_older_than
    return table.get(hold_type) or table.get("default") or DEFAULT_HOLD_LIMIT


def _refund_anchor(order: OrderView) -> datetime | None:
    """From when a cancelled order's captured money waits for its refund."""
    if not _money_held_on_cancel(order) or order.cancelled_at is None:
        return None
    last_capture = order.evidence.last_captured_at
    if last_capture is None or last_capture < order.cancelled_at:
        return order.cancelled_at
    return last_capture


def _money_held_on_cancel(order: OrderView) -> bool:
    pay = order.payment
    return order.cancelled and not order.shipped and pay.captured > pay.refunded


def recheck(order: OrderView, rule: DriftRule, details: Mapping[str, Any]) -> Finding | None:
    """Whether a timed rule's contradiction stands on ``order`` (folded up to the due time).

    ``details`` are a due check's payload, or a ``drift.detected`` event's data: the hold's
    ``hold_type`` and ``placed_at`` for ``hold_too_old``."""
    seen = order.evidence
    if rule is DriftRule.CAPTURED_ON_CANCELLED and _money_held_on_cancel(order):
        pay = order.payment
        facts = {"captured": str(pay.captured), "refunded": str(pay.refunded)}
        evidence = _named(cancelled_by=seen.cancelled_by, captured_by=seen.captured_by)
        return Finding(rule, evidence, facts)
    if rule is DriftRule.CANCEL_NOT_ACKNOWLEDGED and _stop_unanswered(order):
        facts = {"fulfillment": order.fulfillment.value}
        return Finding(rule, _named(cancel_requested_by=seen.cancel_requested_by), facts)
    if rule is DriftRule.HOLD_TOO_OLD:
        return _stale_hold(order, details)
    return None


def _stop_unanswered(order: OrderView) -> bool:
    return (
        order.cancel_requested_at is not None
        and order.evidence.stopship_answered_by is None
        and order.fulfillment in AT_THE_WAREHOUSE
    )


def _unsettled(order: OrderView) -> bool:
    """Neither cancelled nor shipped: a hold still matters (it closed its own case otherwise)."""
    return not order.cancelled and not order.shipped


def _stale_hold(order: OrderView, details: Mapping[str, Any]) -> Finding | None:
    hold_type, placed_at = details.get("hold_type"), _moment(details.get("placed_at"))
    hold = order.holds.get(str(hold_type)) if hold_type else None
    if hold is None or not hold.active or not _unsettled(order):
        return None
    if hold.placed_at != placed_at:
        return None  # the hold was placed again since; that hold's own check decides
    facts = {"hold_type": hold.hold_type, "placed_at": hold.placed_at.isoformat()}
    placed_by = order.evidence.holds_placed_by.get(hold.hold_type)
    return Finding(DriftRule.HOLD_TOO_OLD, _named(hold_placed_by=placed_by), facts)


def _moment(text: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None


def raised(order: OrderView, event: CanonicalEvent) -> tuple[Finding, Resolution | None] | None:
    """A ``drift.detected`` event: the finding the desk recorded when it raised it, and, when the
    contradiction no longer stands where the event sorts in the fold (an event that resolved it
    before the due time arrived late), the outcome that settles the case at once."""
    if event.type is not EventType.DRIFT_DETECTED:
        return None
    try:
        rule = DriftRule(str(event.data.get("rule")))
    except ValueError:
        return None
    if rule not in TIMED_RULES:
        return None
    raw = event.data.get("evidence")
    evidence = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}
    facts = {str(k): str(v) for k, v in event.data.items() if k not in ("rule", "evidence")}
    finding = Finding(rule, evidence, facts)
    if recheck(order, rule, event.data) is not None:
        return finding, None
    return finding, _settled(order, rule)


def _settled(order: OrderView, rule: DriftRule) -> Resolution:
    """How a timed rule's contradiction had ended by its due time."""
    cancelled = Outcome.CANCELLED, _reason(order)
    if rule is DriftRule.HOLD_TOO_OLD and order.cancelled:
        return cancelled
    if order.shipped:
        return Outcome.SHIPPED, None
    if rule is DriftRule.HOLD_TOO_OLD:
        return Outcome.RELEASED, None
    if rule is DriftRule.CAPTURED_ON_CANCELLED:
        return Outcome.REFUNDED, None
    if order.evidence.stopship_answer == EventType.STOPSHIP_REJECTED.value:
        return Outcome.DENIED, None
    return cancelled  # acknowledged, or never at the warehouse: no stop was needed


def _reason(order: OrderView) -> ReasonCode | None:
    return ReasonCode.parse(order.cancel_reason) if order.cancel_reason else None


# --- closing -------------------------------------------------------------------------------------


def resolution(
    order: OrderView, event: CanonicalEvent, rule: str, data: Mapping[str, Any]
) -> Resolution | None:
    """The outcome that resolves an open drift case of ``rule`` after ``event``, if any.

    ``cancelled_but_shipped`` and ``double_refund`` have no natural closer: a human closes them."""
    closer = _CLOSERS.get(rule)
    return closer(order, event, data) if closer is not None else None


def _returned(
    order: OrderView, event: CanonicalEvent, data: Mapping[str, Any]
) -> Resolution | None:
    return (Outcome.RETURNED, None) if order.evidence.returned_by else None


def _refunded(
    order: OrderView, event: CanonicalEvent, data: Mapping[str, Any]
) -> Resolution | None:
    pay = order.payment
    return (Outcome.REFUNDED, None) if ZERO < pay.captured <= pay.refunded else None


def _stop_answered(
    order: OrderView, event: CanonicalEvent, data: Mapping[str, Any]
) -> Resolution | None:
    if event.type is EventType.STOPSHIP_ACKNOWLEDGED:
        return Outcome.CANCELLED, _reason(order)
    return (Outcome.DENIED, None) if event.type is EventType.STOPSHIP_REJECTED else None


def _hold_ended(
    order: OrderView, event: CanonicalEvent, data: Mapping[str, Any]
) -> Resolution | None:
    hold = order.holds.get(str(data.get("hold_type")))
    if hold is None or not hold.active:
        return Outcome.RELEASED, None
    if order.cancelled:
        return Outcome.CANCELLED, _reason(order)
    return (Outcome.SHIPPED, None) if order.shipped else None


_CLOSERS: dict[str, Callable[[OrderView, CanonicalEvent, Mapping[str, Any]], Resolution | None]] = {
    DriftRule.REFUND_WHILE_SHIPPED: _returned,
    DriftRule.CAPTURED_ON_CANCELLED: _refunded,
    DriftRule.CANCEL_NOT_ACKNOWLEDGED: _stop_answered,
    DriftRule.HOLD_TOO_OLD: _hold_ended,
}


WITHDRAWN = Outcome.RELEASED  # a drift case a late event showed never stood (see casebook)
