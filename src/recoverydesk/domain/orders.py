"""Order 360: one order merged from every system's events.

The view is a fold over the order's events in ``sort_key`` order. States that only move forward
(fulfilment) never move back, whatever order the events arrive in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from recoverydesk.domain.events import CanonicalEvent, EventType, OrderFacts
from recoverydesk.domain.money import ZERO


class FulfillmentStatus(StrEnum):
    NOT_RELEASED = "not_released"
    RELEASED = "released"
    PICKING = "picking"
    PACKED = "packed"
    SHIPPED = "shipped"
    DELIVERED = "delivered"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {status: n for n, status in enumerate(FulfillmentStatus)}

FULFILLMENT_EVENTS = {
    EventType.FULFILLMENT_RELEASED: FulfillmentStatus.RELEASED,
    EventType.FULFILLMENT_PICKING: FulfillmentStatus.PICKING,
    EventType.FULFILLMENT_PACKED: FulfillmentStatus.PACKED,
    EventType.FULFILLMENT_SHIPPED: FulfillmentStatus.SHIPPED,
    EventType.FULFILLMENT_DELIVERED: FulfillmentStatus.DELIVERED,
}


class PaymentStatus(StrEnum):
    NONE = "none"
    FAILED = "failed"
    AUTHORIZED = "authorized"
    VOIDED = "voided"
    PARTIALLY_CAPTURED = "partially_captured"
    CAPTURED = "captured"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


@dataclass(slots=True)
class LineView:
    sku: str
    qty: int | None = None
    price: Decimal | None = None
    fulfillment: FulfillmentStatus = FulfillmentStatus.NOT_RELEASED
    cancelled: bool = False
    ordered: bool = False  # the line came from the order's own facts, not only from an event


@dataclass(slots=True)
class HoldView:
    hold_type: str
    active: bool
    placed_at: datetime
    released_at: datetime | None = None
    reason: str | None = None


@dataclass(slots=True)
class PaymentView:
    authorized: Decimal = ZERO
    captured: Decimal = ZERO
    refunded: Decimal = ZERO
    voided: bool = False
    failures: int = 0
    last_failure: str | None = None
    refunds: dict[str, Decimal] = field(default_factory=dict)
    captures: dict[str, Decimal] = field(default_factory=dict)

    @property
    def status(self) -> PaymentStatus:
        if self.refunded > ZERO:
            full = self.refunded >= self.captured
            return PaymentStatus.REFUNDED if full else PaymentStatus.PARTIALLY_REFUNDED
        if self.captured > ZERO:
            partial = self.authorized > self.captured
            return PaymentStatus.PARTIALLY_CAPTURED if partial else PaymentStatus.CAPTURED
        if self.voided:
            return PaymentStatus.VOIDED
        if self.authorized > ZERO:
            return PaymentStatus.AUTHORIZED
        return PaymentStatus.FAILED if self.failures else PaymentStatus.NONE


@dataclass(frozen=True, slots=True)
class RefundSeen:
    """The first event that reported a refund (by refund id), and the intent it named."""

    event_id: str
    intent: str | None = None


@dataclass(slots=True)
class OrderEvidence:
    """Which event first showed each fact that the drift rules (``domain.drift``) compare.

    ``folded`` counts the events folded into this view. The stored snapshot keeps the record;
    a snapshot written before it did has ``folded`` behind ``OrderView.event_count``: it is
    incomplete, and ``OrderView.accepts_in_order`` sends an order whose drift rules need the
    record through a refold of its history.
    """

    folded: int = 0
    cancelled_by: str | None = None
    shipped_by: str | None = None
    returned_by: str | None = None
    return_in_flight_by: str | None = None
    captured_by: str | None = None
    last_captured_at: datetime | None = None
    refunds: dict[str, RefundSeen] = field(default_factory=dict)
    cancel_requested_by: str | None = None
    stopship_answered_by: str | None = None
    stopship_answer: str | None = None  # the answer's event type: acknowledged or rejected
    holds_placed_by: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class OrderView:
    """The order 360. ``last_key`` is the sort key of the latest event folded in."""

    ref: str
    channel: str | None = None
    fulfillment_type: str | None = None
    value: Decimal | None = None
    currency: str | None = None
    placed_at: datetime | None = None
    ship_by: datetime | None = None
    promised_by: datetime | None = None
    customer_id: str | None = None
    customer_email: str | None = None
    customer_tier: str | None = None
    shipping_address: dict[str, str] | None = None
    address_status: str = "unverified"
    lines: dict[str, LineView] = field(default_factory=dict)
    fulfillment: FulfillmentStatus = FulfillmentStatus.NOT_RELEASED
    fulfillment_times: dict[str, datetime] = field(default_factory=dict)
    tracking: list[str] = field(default_factory=list)
    payment: PaymentView = field(default_factory=PaymentView)
    holds: dict[str, HoldView] = field(default_factory=dict)
    cancel_requested_at: datetime | None = None
    fully_cancelled: bool = False
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    system_ids: dict[str, str] = field(default_factory=dict)
    tickets: list[str] = field(default_factory=list)
    erp_status: str | None = None  # the ERP's own order status (NetSuite: pending_approval ...)
    carrier: str | None = None
    event_count: int = 0
    last_key: tuple[datetime, str] | None = None
    evidence: OrderEvidence = field(default_factory=OrderEvidence)

    @property
    def cancelled(self) -> bool:
        """Every line ended cancelled (KPIS.md); lines never seen do not make a cancel whole."""
        return self.fully_cancelled

    @property
    def partially_cancelled(self) -> bool:
        if self.fully_cancelled:
            return False
        return any(line.cancelled for line in self.lines.values())

    @property
    def shipped(self) -> bool:
        return self.fulfillment.rank >= FulfillmentStatus.SHIPPED.rank

    @property
    def active_holds(self) -> list[str]:
        return sorted(h.hold_type for h in self.holds.values() if h.active)

    @property
    def evidence_complete(self) -> bool:
        """Every event this view counts was folded into it with its drift evidence."""
        return self.evidence.folded == self.event_count

    @property
    def has_drift_sides(self) -> bool:
        """A fact that a later event could contradict, which the drift rules name by event."""
        return (
            self.fully_cancelled
            or self.shipped
            or bool(self.payment.refunds)
            or self.cancel_requested_at is not None
        )

    def accepts_in_order(self, event: CanonicalEvent) -> bool:
        """True when ``event`` sorts after everything folded so far (the incremental path) and
        the view holds every fact the incremental fold needs: an order read back without its
        drift evidence, with a fact the drift rules compare, is refolded from its history."""
        if self.last_key is not None and event.sort_key <= self.last_key:
            return False
        return self.evidence_complete or not self.has_drift_sides

    def apply(self, event: CanonicalEvent) -> None:
        """Fold one event in. Callers fold in ``sort_key`` order."""
        self._merge_facts(event.order)
        handler = _HANDLERS.get(event.type)
        if handler is not None:
            handler(self, event)
        self.event_count += 1
        self.evidence.folded += 1
        if self.last_key is None or event.sort_key > self.last_key:
            self.last_key = event.sort_key

    def _merge_facts(self, facts: OrderFacts) -> None:
        for name in _SCALAR_FACTS:
            value = getattr(facts, name)
            if value is not None:
                setattr(self, name, value)
        if facts.shipping_address is not None:
            if self.shipping_address not in (None, dict(facts.shipping_address)):
                self.address_status = "changed"
            self.shipping_address = dict(facts.shipping_address)
        if facts.ids:
            self.system_ids.update(facts.ids)
        for line in facts.lines or ():
            view = self.lines.setdefault(line.sku, LineView(sku=line.sku))
            view.ordered = True
            view.cancelled = view.cancelled or self.fully_cancelled
            view.qty = line.qty if line.qty is not None else view.qty
            view.price = line.price if line.price is not None else view.price


_SCALAR_FACTS = (
    "channel",
    "fulfillment_type",
    "value",
    "currency",
    "placed_at",
    "ship_by",
    "promised_by",
    "customer_id",
    "customer_email",
    "customer_tier",
)


def _event_skus(event: CanonicalEvent) -> list[str] | None:
    lines = event.data.get("lines")
    if not lines:
        return None
    return [str(line["sku"]) for line in lines]


def _on_fulfillment(order: OrderView, event: CanonicalEvent) -> None:
    status = FULFILLMENT_EVENTS[event.type]
    skus = _event_skus(event)
    targets = [order.lines.setdefault(s, LineView(sku=s)) for s in skus] if skus else None
    for line in targets if targets is not None else order.lines.values():
        if status.rank > line.fulfillment.rank:
            line.fulfillment = status
    if status.rank > order.fulfillment.rank:
        order.fulfillment = status
    if order.shipped and order.evidence.shipped_by is None:
        order.evidence.shipped_by = event.id
    order.fulfillment_times.setdefault(status.value, event.occurred_at)
    carrier = event.data.get("carrier")
    if carrier:
        order.carrier = str(carrier).lower()
    tracking = event.data.get("tracking")
    if tracking and str(tracking) not in order.tracking:
        order.tracking.append(str(tracking))


def _amount(event: CanonicalEvent, default: Decimal | None) -> Decimal:
    raw = event.data.get("amount")
    if raw is not None:
        return Decimal(str(raw))
    return default if default is not None else ZERO


def _on_authorized(order: OrderView, event: CanonicalEvent) -> None:
    order.payment.authorized = _amount(event, order.value)
    order.payment.voided = False


def _on_captured(order: OrderView, event: CanonicalEvent) -> None:
    """A capture is counted once per capture id, whichever system reported it."""
    pay = order.payment
    capture_id = str(event.data.get("capture_id") or event.id)
    pay.captures[capture_id] = _amount(event, pay.authorized or order.value)
    pay.captured = sum(pay.captures.values(), ZERO)
    pay.authorized = max(pay.authorized, pay.captured)
    seen = order.evidence
    seen.captured_by = seen.captured_by or event.id
    seen.last_captured_at = max(seen.last_captured_at or event.occurred_at, event.occurred_at)


def _on_failed(order: OrderView, event: CanonicalEvent) -> None:
    order.payment.failures += 1
    order.payment.last_failure = str(event.data.get("reason") or event.data.get("code") or "")


def _on_voided(order: OrderView, event: CanonicalEvent) -> None:
    order.payment.voided = True


def _on_refunded(order: OrderView, event: CanonicalEvent) -> None:
    """A refund is counted once per refund id, whichever system reported it."""
    pay = order.payment
    refund_id = str(event.data.get("refund_id") or event.id)
    if refund_id not in order.evidence.refunds:
        intent = event.data.get("intent")
        order.evidence.refunds[refund_id] = RefundSeen(event.id, str(intent) if intent else None)
    amount = _amount(event, pay.captured)
    if amount > pay.refunds.get(refund_id, ZERO):
        pay.refunds[refund_id] = amount
        pay.refunded = sum(pay.refunds.values(), ZERO)


def _on_hold_placed(order: OrderView, event: CanonicalEvent) -> None:
    hold_type = str(event.data["hold_type"])
    reason = event.data.get("reason")
    order.holds[hold_type] = HoldView(
        hold_type=hold_type,
        active=True,
        placed_at=event.occurred_at,
        reason=str(reason) if reason else None,
    )
    order.evidence.holds_placed_by[hold_type] = event.id


def _on_hold_released(order: OrderView, event: CanonicalEvent) -> None:
    hold_type = event.data.get("hold_type")
    for hold in order.holds.values():
        if hold.active and hold_type in (None, hold.hold_type):
            hold.active = False
            hold.released_at = event.occurred_at


def _on_address_invalid(order: OrderView, event: CanonicalEvent) -> None:
    order.address_status = "invalid"


def _on_cancel_requested(order: OrderView, event: CanonicalEvent) -> None:
    if order.cancel_requested_at is None:
        order.cancel_requested_at = event.occurred_at
        order.evidence.cancel_requested_by = event.id


def _on_cancelled(order: OrderView, event: CanonicalEvent) -> None:
    """A cancel of the whole order, or of the lines ``data.lines`` names."""
    skus = _event_skus(event)
    for sku in skus or ():
        order.lines.setdefault(sku, LineView(sku=sku)).cancelled = True
    ordered = [line for line in order.lines.values() if line.ordered]
    whole = skus is None or (bool(ordered) and all(line.cancelled for line in ordered))
    if not whole or order.fully_cancelled:
        return
    for line in order.lines.values():
        line.cancelled = True
    order.fully_cancelled = True
    order.cancelled_at = event.occurred_at
    order.evidence.cancelled_by = event.id
    reason = event.data.get("reason_code") or event.data.get("reason")
    order.cancel_reason = str(reason) if reason else None


def _on_return_received(order: OrderView, event: CanonicalEvent) -> None:
    order.evidence.returned_by = order.evidence.returned_by or event.id


def _on_delivery_exception(order: OrderView, event: CanonicalEvent) -> None:
    """A parcel returned to sender is a return in flight."""
    if event.data.get("kind") == "returned_to_sender":
        seen = order.evidence
        seen.return_in_flight_by = seen.return_in_flight_by or event.id


def _on_stopship_answer(order: OrderView, event: CanonicalEvent) -> None:
    """The warehouse answered a stop-ship request: acknowledged or rejected."""
    seen = order.evidence
    if seen.stopship_answered_by is None:
        seen.stopship_answered_by, seen.stopship_answer = event.id, event.type.value


def _on_order_facts(order: OrderView, event: CanonicalEvent) -> None:
    status = event.data.get("erp_status")
    if status:
        order.erp_status = str(status)


def _on_stopship_finished(order: OrderView, event: CanonicalEvent) -> None:
    """The desk's stop-ship workflow cancelled the order (or the lines it names)."""
    if event.data.get("outcome") in STOPSHIP_CANCELLED:
        _on_cancelled(order, event)


STOPSHIP_CANCELLED = frozenset({"stopped", "cancelled_fraud"})


def _on_ticket(order: OrderView, event: CanonicalEvent) -> None:
    ticket = event.data.get("ticket_id")
    if ticket and str(ticket) not in order.tickets:
        order.tickets.append(str(ticket))


_HANDLERS: dict[EventType, Callable[[OrderView, CanonicalEvent], None]] = {
    **dict.fromkeys(FULFILLMENT_EVENTS, _on_fulfillment),
    EventType.PAYMENT_AUTHORIZED: _on_authorized,
    EventType.PAYMENT_CAPTURED: _on_captured,
    EventType.PAYMENT_FAILED: _on_failed,
    EventType.PAYMENT_VOIDED: _on_voided,
    EventType.PAYMENT_REFUNDED: _on_refunded,
    EventType.HOLD_PLACED: _on_hold_placed,
    EventType.HOLD_RELEASED: _on_hold_released,
    EventType.ADDRESS_INVALID: _on_address_invalid,
    EventType.CANCEL_REQUESTED: _on_cancel_requested,
    EventType.ORDER_CANCELLED: _on_cancelled,
    EventType.TICKET_CREATED: _on_ticket,
    EventType.ORDER_PLACED: _on_order_facts,
    EventType.ORDER_UPDATED: _on_order_facts,
    EventType.STOPSHIP_FINISHED: _on_stopship_finished,
    EventType.RETURN_RECEIVED: _on_return_received,
    EventType.DELIVERY_EXCEPTION: _on_delivery_exception,
    EventType.STOPSHIP_ACKNOWLEDGED: _on_stopship_answer,
    EventType.STOPSHIP_REJECTED: _on_stopship_answer,
}
