"""Deterministic, realistic canonical event streams: what the sandbox merchant emits.

Used by the demo, the tests and the benchmarks. The same arguments always give the same stream
(``random.Random(seed)``, no wall-clock time). Each order lives its own life: it is placed, paid,
fulfilled and delivered, and about a quarter of the orders run into an exception (failed payment,
hold, invalid address, stock short, cancel request, delivery exception, dispute), which most of
the time is followed by its resolution. On average an order emits about five events.

Event times are whole seconds in UTC, strictly increasing inside each order, and the returned
stream is sorted by ``occurred_at`` (ties by generation order).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from recoverydesk.domain.events import EventSource, EventType, HoldType

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR
MEAN_GAP_SECONDS = 45.0  # between two orders: 20,000 orders span about ten days
SKUS = 240
CENTS = Decimal("0.01")
CARRIERS = ("ups", "fedex", "usps", "dhl")
CITIES = (
    ("Austin", "TX", "78701"),
    ("Denver", "CO", "80202"),
    ("Portland", "OR", "97205"),
    ("Columbus", "OH", "43215"),
    ("Tampa", "FL", "33602"),
    ("Albany", "NY", "12207"),
)
FULFILMENT_MIX = {"in_house": 35, "3pl": 40, "drop_ship": 25}
# Which warehouse updates each kind of fulfilment reports, and how often (not every
# integration reports every step).
FULFILMENT_STEPS: dict[str, tuple[tuple[EventType, float], ...]] = {
    "in_house": (
        (EventType.FULFILLMENT_RELEASED, 1.0),
        (EventType.FULFILLMENT_PICKING, 0.2),
        (EventType.FULFILLMENT_PACKED, 0.3),
    ),
    "3pl": ((EventType.FULFILLMENT_RELEASED, 0.6), (EventType.FULFILLMENT_PACKED, 0.1)),
    "drop_ship": (),
    "marketplace": (),
}
DELIVERY_TRACKED = 0.4  # share of shipments whose carrier reports the delivery
DECLINES = ("card_declined", "insufficient_funds", "expired_card", "do_not_honor")
HOLD_REASONS = {
    HoldType.FRAUD: "high_risk_score",
    HoldType.ADDRESS: "address_unverified",
    HoldType.INVENTORY: "awaiting_stock",
    HoldType.WAREHOUSE: "pick_exception",
}
HOLD_CANCEL_REASON = {
    HoldType.FRAUD: "fraud",
    HoldType.ADDRESS: "address",
    HoldType.INVENTORY: "stockout",
    HoldType.WAREHOUSE: "lead_time",
}
CANCEL_REQUESTS = {  # who asks: (the reason they give, the cancellation's reason code)
    "customer": (
        ("changed_mind", "customer_request"),
        ("ordered_by_mistake", "customer_request"),
        ("found_cheaper", "customer_request"),
    ),
    "ops": (("duplicate_order", "duplicate_order"), ("price_error", "price_error")),
    "auto": (("payment_timeout", "payment_timeout"),),
}
DELIVERY_KINDS = {
    "delay": 40,
    "failed_attempt": 25,
    "damaged": 10,
    "lost": 10,
    "returned_to_sender": 15,
}
DISPUTE_REASONS = ("fraudulent", "product_not_received", "not_as_described", "duplicate")


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, to the second (the times here are whole seconds in UTC)."""
    return moment.isoformat()[:19] + "Z"


def _money(amount: Decimal) -> str:
    return str(amount.quantize(CENTS))


@dataclass(frozen=True, slots=True)
class _Order:
    ref: str
    channel: str
    fulfillment_type: str
    value: Decimal
    placed_at: datetime
    facts: dict[str, Any]


@dataclass(slots=True)
class _Stream:
    """Collects events with unique, source-prefixed ids, in generation order."""

    merchant: str | None
    rows: list[tuple[datetime, int, dict[str, Any]]] = field(default_factory=list)

    def emit(
        self,
        source: str,
        kind: EventType,
        at: datetime,
        order: dict[str, Any],
        data: dict[str, Any],
    ) -> None:
        number = len(self.rows) + 1
        event: dict[str, Any] = {
            "id": f"{source}:evt-{number:06d}",
            "source": source,
            "type": kind.value,
            "occurred_at": _iso(at),
            "order": order,
            "data": data,
        }
        if self.merchant is not None:
            event["merchant"] = self.merchant
        self.rows.append((at, number, event))

    def in_time_order(self) -> list[dict[str, Any]]:
        return [event for _, _, event in sorted(self.rows, key=lambda row: row[:2])]


def _fulfillment_type(rng: random.Random, channel: str) -> str:
    if channel == EventSource.AMAZON and rng.random() < 0.7:
        return "marketplace"
    return rng.choices(list(FULFILMENT_MIX), weights=list(FULFILMENT_MIX.values()))[0]


def _lines(rng: random.Random) -> list[dict[str, Any]]:
    skus = rng.sample(range(1, SKUS + 1), k=rng.choices((1, 2, 3), weights=(60, 28, 12))[0])
    return [
        {
            "sku": f"SKU-{sku:04d}",
            "qty": rng.choices((1, 2, 3), weights=(75, 18, 7))[0],
            "price": _money(Decimal(rng.randint(499, 24999)) / 100),
        }
        for sku in skus
    ]


def _customer(rng: random.Random, orders: int) -> dict[str, str]:
    number = rng.randint(1, max(orders // 2, 1))  # customers come back: about two orders each
    tier = "vip" if rng.random() < 0.05 else "standard"
    return {"id": f"c-{number}", "email": f"customer{number}@example.com", "tier": tier}


def _address(rng: random.Random) -> dict[str, str]:
    city, region, postal_code = rng.choice(CITIES)
    return {
        "line1": f"{rng.randint(1, 9999)} Main St",
        "city": city,
        "region": region,
        "postal_code": postal_code,
        "country": "US",
    }


def _new_order(
    rng: random.Random, number: int, placed_at: datetime, channels: Sequence[str], orders: int
) -> _Order:
    channel = rng.choice(channels)
    kind = _fulfillment_type(rng, channel)
    lines = _lines(rng)
    value = sum((Decimal(line["price"]) * line["qty"] for line in lines), Decimal(0))
    ship_by = placed_at + timedelta(seconds=rng.randint(DAY, 2 * DAY))
    promised_by = ship_by + timedelta(seconds=rng.randint(2 * DAY, 5 * DAY))
    ref = f"{100001 + number}"
    facts = {
        "ref": ref,
        "channel": channel,
        "fulfillment_type": kind,
        "value": _money(value),
        "currency": "USD",
        "placed_at": _iso(placed_at),
        "ship_by": _iso(ship_by),
        "promised_by": _iso(promised_by),
        "customer": _customer(rng, orders),
        "lines": lines,
        "shipping_address": _address(rng),
    }
    return _Order(ref, channel, kind, value, placed_at, facts)


class _Life:
    """One order's events, along a clock of its own that only moves forward."""

    def __init__(self, rng: random.Random, stream: _Stream, order: _Order) -> None:
        self.rng, self.stream, self.order = rng, stream, order
        self.now = order.placed_at
        self.authorized = self.captured = False
        self.refunds = 0
        self.tracking: str | None = None
        self.payer = EventSource.AMAZON.value if order.channel == EventSource.AMAZON else "psp"

    def wait(self, low: int, high: int) -> None:
        self.now += timedelta(seconds=self.rng.randint(max(low, 1), max(high, low, 1)))

    def emit(
        self,
        source: str,
        kind: EventType,
        data: dict[str, Any] | None = None,
        *,
        low: int = 1,
        high: int = MINUTE,
    ) -> None:
        self.wait(low, high)
        self.stream.emit(source, kind, self.now, {"ref": self.order.ref}, data or {})

    def place(self) -> None:
        order = self.order
        self.stream.emit(order.channel, EventType.ORDER_PLACED, self.now, order.facts, {})

    def authorize(self, *, low: int = 5, high: int = 2 * MINUTE) -> None:
        amount = {"amount": _money(self.order.value)}
        self.emit(self.payer, EventType.PAYMENT_AUTHORIZED, amount, low=low, high=high)
        self.authorized = True

    def fulfil(self) -> None:
        """From the release to the warehouse to the shipment; the payment is captured on the way."""
        for kind, chance in FULFILMENT_STEPS[self.order.fulfillment_type]:
            if self.rng.random() < chance:
                self.emit("wms", kind, low=10 * MINUTE, high=3 * HOUR)
        amount = {"amount": _money(self.order.value)}
        self.emit(self.payer, EventType.PAYMENT_CAPTURED, amount, low=MINUTE, high=2 * HOUR)
        self.captured = True
        self.ship(low=30 * MINUTE, high=6 * HOUR)

    def ship(self, *, low: int, high: int) -> None:
        self.tracking = f"1Z{self.rng.randrange(10**15):015d}"
        shipment = {"tracking": self.tracking, "carrier": self.rng.choice(CARRIERS)}
        self.emit("wms", EventType.FULFILLMENT_SHIPPED, shipment, low=low, high=high)

    def deliver(self, *, tracked: float = DELIVERY_TRACKED) -> None:
        if self.rng.random() < tracked:
            data = {"tracking": self.tracking} if self.tracking else {}
            self.emit("carrier", EventType.FULFILLMENT_DELIVERED, data, low=DAY, high=4 * DAY)

    def cancel(self, reason: str, *, low: int, high: int) -> None:
        """The channel cancels; the payment is voided, or refunded if it was captured."""
        self.emit(
            self.order.channel, EventType.ORDER_CANCELLED, {"reason": reason}, low=low, high=high
        )
        if self.captured:
            self.refund(self.order.value, low=MINUTE, high=HOUR)
        elif self.authorized:
            self.emit(self.payer, EventType.PAYMENT_VOIDED, low=MINUTE, high=30 * MINUTE)

    def refund(self, amount: Decimal, *, low: int, high: int) -> None:
        self.refunds += 1
        data = {"amount": _money(amount), "refund_id": f"re-{self.order.ref}-{self.refunds}"}
        self.emit(self.payer, EventType.PAYMENT_REFUNDED, data, low=low, high=high)


def _happy(life: _Life) -> None:
    life.authorize()
    life.fulfil()
    life.deliver()


def _payment_failed(life: _Life) -> None:
    decline = {"reason": life.rng.choice(DECLINES), "amount": _money(life.order.value)}
    life.emit(life.payer, EventType.PAYMENT_FAILED, decline, low=5, high=2 * MINUTE)
    roll = life.rng.random()
    if roll < 0.65:  # the customer updates the card
        life.authorize(low=20 * MINUTE, high=DAY)
        life.fulfil()
        life.deliver()
    elif roll < 0.9:
        life.cancel("payment_declined", low=DAY, high=3 * DAY)


def _hold(life: _Life) -> None:
    life.authorize()
    kinds = (HoldType.FRAUD, HoldType.ADDRESS, HoldType.INVENTORY, HoldType.WAREHOUSE)
    hold = life.rng.choices(kinds, weights=(40, 20, 20, 20))[0]
    source = life.order.channel if hold in (HoldType.FRAUD, HoldType.ADDRESS) else "wms"
    placed = {"hold_type": hold.value, "reason": HOLD_REASONS[hold]}
    life.emit(source, EventType.HOLD_PLACED, placed, low=MINUTE, high=2 * HOUR)
    roll = life.rng.random()
    if roll < 0.75:
        released = {"hold_type": hold.value}
        life.emit(source, EventType.HOLD_RELEASED, released, low=30 * MINUTE, high=12 * HOUR)
        life.fulfil()
        life.deliver()
    elif roll < 0.9:
        life.cancel(HOLD_CANCEL_REASON[hold], low=2 * HOUR, high=DAY)


def _address_invalid(life: _Life) -> None:
    life.authorize()
    problem = {"reason": life.rng.choice(("missing_apartment", "undeliverable", "po_box"))}
    life.emit("wms", EventType.ADDRESS_INVALID, problem, low=10 * MINUTE, high=4 * HOUR)
    if life.rng.random() < 0.8:  # the customer confirms a corrected address
        order = {"ref": life.order.ref, "shipping_address": _address(life.rng)}
        life.wait(30 * MINUTE, 12 * HOUR)
        life.stream.emit(life.order.channel, EventType.ORDER_UPDATED, life.now, order, {})
        life.fulfil()
        life.deliver()


def _inventory_short(life: _Life) -> None:
    life.authorize()
    line = life.rng.choice(life.order.facts["lines"])
    short = {"sku": line["sku"], "available": life.rng.randint(0, line["qty"] - 1)}
    life.emit("wms", EventType.INVENTORY_SHORT, short, low=30 * MINUTE, high=6 * HOUR)
    roll = life.rng.random()
    if roll < 0.45:
        life.cancel("stockout", low=2 * HOUR, high=2 * DAY)
    elif roll < 0.85:  # restocked
        life.wait(DAY, 3 * DAY)
        life.fulfil()
        life.deliver()


def _cancel_requested(life: _Life) -> None:
    life.authorize()
    by = life.rng.choices(list(CANCEL_REQUESTS), weights=(70, 20, 10))[0]
    reason, code = life.rng.choice(CANCEL_REQUESTS[by])
    source = "helpdesk" if by == "customer" else life.order.channel
    request = {"requested_by": by, "reason": reason}
    life.emit(source, EventType.CANCEL_REQUESTED, request, low=5 * MINUTE, high=6 * HOUR)
    if life.rng.random() < 0.8:
        life.cancel(code, low=10 * MINUTE, high=8 * HOUR)
    else:  # too late to stop the shipment
        life.fulfil()
        life.deliver()


@dataclass(frozen=True, slots=True)
class WarehouseAnswers:
    """How the 3PL emulator answers a stop-ship request (weights; see ``_stop_ship``): on time
    (2-40 minutes), late (2-5 hours), rejected ("already packed", then it ships), or never (and
    then the order ships half the time). ``after_shipment`` is the share of cancel requests that
    come when the order has already shipped."""

    on_time: float = 75
    late: float = 10
    rejected: float = 5
    never: float = 10
    after_shipment: float = 0.15

    def describe(self) -> str:
        return (
            f"acknowledged on time {self.on_time:g}%, late {self.late:g}%, rejected "
            f"{self.rejected:g}%, never {self.never:g}%; {self.after_shipment:.0%} of the "
            "requests come after the shipment"
        )


WAREHOUSE_STAGES = (  # where a 3PL order is when the customer asks to cancel (weights)
    ((), 40),
    ((EventType.FULFILLMENT_RELEASED,), 30),
    ((EventType.FULFILLMENT_RELEASED, EventType.FULFILLMENT_PICKING), 20),
    ((EventType.FULFILLMENT_RELEASED, EventType.FULFILLMENT_PACKED), 10),
)


def _stop_ship(life: _Life, answers: WarehouseAnswers) -> None:
    """A cancel request with the desk running the stop-ship workflow: the warehouse, not the
    channel, answers; the desk cancels in the ERP and refunds (nothing here does it for it)."""
    life.authorize()
    if life.rng.random() < 0.5:
        amount = {"amount": _money(life.order.value)}
        life.emit(life.payer, EventType.PAYMENT_CAPTURED, amount, low=MINUTE, high=HOUR)
        life.captured = True
    by = life.rng.choices(list(CANCEL_REQUESTS), weights=(70, 20, 10))[0]
    reason, _ = life.rng.choice(CANCEL_REQUESTS[by])
    source = "helpdesk" if by == "customer" else life.order.channel
    request = {"requested_by": by, "reason": reason}
    if life.rng.random() < answers.after_shipment:
        life.ship(low=30 * MINUTE, high=6 * HOUR)
        life.emit(source, EventType.CANCEL_REQUESTED, request, low=HOUR, high=DAY)
        if life.rng.random() < 0.6:
            life.emit("wms", EventType.RETURN_RECEIVED, low=3 * DAY, high=7 * DAY)
        return
    stages = [stage for stage, _ in WAREHOUSE_STAGES]
    reached = life.rng.choices(stages, weights=[w for _, w in WAREHOUSE_STAGES])[0]
    for kind in reached:
        life.emit("wms", kind, low=10 * MINUTE, high=HOUR)
    life.emit(source, EventType.CANCEL_REQUESTED, request, low=MINUTE, high=20 * MINUTE)
    if not reached:
        return  # not released: no warehouse answer is needed
    weights = (answers.on_time, answers.late, answers.rejected, answers.never)
    answer = life.rng.choices(("on_time", "late", "rejected", "never"), weights=weights)[0]
    if answer == "on_time":
        life.emit("wms", EventType.STOPSHIP_ACKNOWLEDGED, low=2 * MINUTE, high=40 * MINUTE)
    elif answer == "late":
        life.emit("wms", EventType.STOPSHIP_ACKNOWLEDGED, low=2 * HOUR, high=5 * HOUR)
    elif answer == "rejected":
        rejected = {"message": "already packed: the carrier collects today"}
        life.emit("wms", EventType.STOPSHIP_REJECTED, rejected, low=5 * MINUTE, high=HOUR)
        life.ship(low=30 * MINUTE, high=3 * HOUR)
        life.deliver()
    elif life.rng.random() < 0.5:
        life.ship(low=HOUR, high=6 * HOUR)
        life.deliver()


def _delivery_exception(life: _Life) -> None:
    life.authorize()
    life.fulfil()
    kind = life.rng.choices(list(DELIVERY_KINDS), weights=list(DELIVERY_KINDS.values()))[0]
    problem = {"kind": kind, "tracking": life.tracking}
    life.emit("carrier", EventType.DELIVERY_EXCEPTION, problem, low=12 * HOUR, high=3 * DAY)
    roll, value = life.rng.random(), life.order.value
    if kind in ("delay", "failed_attempt"):
        life.deliver(tracked=0.9)
    elif kind == "damaged":
        life.deliver(tracked=1.0)
        if roll < 0.6:  # a partial refund as a concession
            life.refund(value * Decimal("0.3"), low=HOUR, high=DAY)
    elif kind == "lost" and roll < 0.4:
        life.refund(value, low=DAY, high=3 * DAY)
    elif kind == "lost" and roll < 0.8:  # reshipped
        life.ship(low=HOUR, high=DAY)
        life.deliver(tracked=0.9)
    elif kind == "returned_to_sender" and roll < 0.8:
        life.emit("wms", EventType.RETURN_RECEIVED, low=3 * DAY, high=8 * DAY)
        life.refund(value, low=HOUR, high=DAY)


def _dispute(life: _Life) -> None:
    life.authorize()
    life.fulfil()
    life.deliver(tracked=0.8)
    life.wait(5 * DAY, 30 * DAY)
    due_by = life.now + timedelta(seconds=life.rng.randint(7 * DAY, 10 * DAY))
    claim = {
        "amount": _money(life.order.value),
        "reason": life.rng.choice(DISPUTE_REASONS),
        "due_by": _iso(due_by),
    }
    life.emit(life.payer, EventType.DISPUTE_OPENED, claim)


Scenario = Callable[[_Life], None]
SCENARIOS: dict[Scenario, float] = {  # weights in percent of orders
    _happy: 75,
    _payment_failed: 5,
    _hold: 5,
    _address_invalid: 3,
    _inventory_short: 3,
    _cancel_requested: 3.5,
    _delivery_exception: 4.5,
    _dispute: 1,
}


def generate_orders(
    *,
    orders: int,
    seed: int = 7,
    start: datetime,
    merchant: str | None = None,
    channels: Sequence[str] = ("shopify", "amazon", "woocommerce"),
    warehouse: WarehouseAnswers | None = None,
) -> list[dict[str, Any]]:
    """Canonical events (JSON-ready dicts) of ``orders`` orders placed from ``start`` on.

    Orders arrive about every 45 seconds; each order's value is the sum of its lines'
    ``qty * price``. The list is sorted by ``occurred_at``. With ``warehouse``, cancel
    requests are answered by the 3PL as the desk's stop-ship workflow expects (``_stop_ship``)
    instead of being cancelled by the channel on its own.
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    sources = {source.value for source in EventSource}
    unknown = [name for name in channels if name not in sources]
    if not channels or unknown:
        raise ValueError(f"channels must be event sources, got {list(channels)!r}")
    rng = random.Random(seed)  # noqa: S311 - simulated traffic, not cryptography
    stream = _Stream(merchant)
    scenarios, weights = list(SCENARIOS), list(SCENARIOS.values())
    placed_at = start.astimezone(UTC).replace(microsecond=0)
    for number in range(orders):
        placed_at += timedelta(seconds=round(rng.expovariate(1 / MEAN_GAP_SECONDS)))
        life = _Life(rng, stream, _new_order(rng, number, placed_at, channels, orders))
        life.place()
        scenario = rng.choices(scenarios, weights=weights)[0]
        if warehouse is not None and scenario is _cancel_requested:
            _stop_ship(life, warehouse)
        else:
            scenario(life)
    return stream.in_time_order()


def to_jsonl(events: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write one JSON object per line; returns how many were written."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as out:
        for event in events:
            out.write(json.dumps(event, separators=(",", ":")) + "\n")
            count += 1
    return count
