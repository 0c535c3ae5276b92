"""The canonical event: the one shape every intake path (webhook, poll, file, manual) becomes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any


class EventSource(StrEnum):
    SHOPIFY = "shopify"
    WOOCOMMERCE = "woocommerce"
    MAGENTO = "magento"
    AMAZON = "amazon"
    NETSUITE = "netsuite"
    WMS = "wms"
    CARRIER = "carrier"
    HELPDESK = "helpdesk"
    PSP = "psp"
    DESK = "desk"
    IMPORT = "import"


class EventType(StrEnum):
    ORDER_PLACED = "order.placed"
    ORDER_UPDATED = "order.updated"
    ORDER_CANCELLED = "order.cancelled"
    PAYMENT_AUTHORIZED = "payment.authorized"
    PAYMENT_CAPTURED = "payment.captured"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_VOIDED = "payment.voided"
    PAYMENT_REFUNDED = "payment.refunded"
    HOLD_PLACED = "hold.placed"
    HOLD_RELEASED = "hold.released"
    ADDRESS_INVALID = "address.invalid"
    INVENTORY_SHORT = "inventory.short"
    FULFILLMENT_RELEASED = "fulfillment.released"
    FULFILLMENT_PICKING = "fulfillment.picking"
    FULFILLMENT_PACKED = "fulfillment.packed"
    FULFILLMENT_SHIPPED = "fulfillment.shipped"
    FULFILLMENT_DELIVERED = "fulfillment.delivered"
    DELIVERY_EXCEPTION = "delivery.exception"
    CANCEL_REQUESTED = "cancel.requested"
    CHANGE_REQUESTED = "change.requested"
    STOPSHIP_ACKNOWLEDGED = "stopship.acknowledged"
    STOPSHIP_REJECTED = "stopship.rejected"
    RETURN_RECEIVED = "return.received"
    DISPUTE_OPENED = "dispute.opened"
    CUSTOMER_REPLIED = "customer.replied"
    TICKET_CREATED = "ticket.created"
    # Extension: raised by the desk itself when an order is still unfulfilled at its ship-by time.
    SHIP_BY_MISSED = "fulfillment.ship_by_missed"
    # Extension: raised by the desk itself when a timed drift rule (F3) finds its contradiction
    # still standing at its due time; ``data.rule`` names the rule, ``data.evidence`` the events.
    DRIFT_DETECTED = "drift.detected"
    # Extension: raised by the desk when a stop-ship workflow (STOPSHIP.md) reaches its final
    # outcome; ``data.outcome`` names it, ``data.lines`` the lines of a partial cancel.
    STOPSHIP_FINISHED = "stopship.finished"


class HoldType(StrEnum):
    FRAUD = "fraud"
    ADDRESS = "address"
    PAYMENT = "payment"
    INVENTORY = "inventory"
    WAREHOUSE = "warehouse"
    CUSTOMER_REQUEST = "customer_request"


@dataclass(frozen=True, slots=True)
class LineFacts:
    sku: str
    qty: int | None = None
    price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """What an event says about its order; every field but ``ref`` may be absent."""

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
    lines: tuple[LineFacts, ...] | None = None
    shipping_address: Mapping[str, str] | None = None
    ids: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class CanonicalEvent:
    id: str
    source: EventSource
    type: EventType
    occurred_at: datetime
    order: OrderFacts
    data: Mapping[str, Any] = field(default_factory=dict)
    merchant: str | None = None

    @property
    def sort_key(self) -> tuple[datetime, str]:
        """The order in which events are folded: when they happened, then by id for ties."""
        return (self.occurred_at, self.id)
