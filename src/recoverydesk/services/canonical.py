"""Validation of canonical events (the contract's event format) into domain events.

Errors name the field, so a user can fix the line; nothing is stored from an invalid event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from recoverydesk.domain.drift import TIMED_RULES, DriftRule
from recoverydesk.domain.errors import InvalidEvent
from recoverydesk.domain.events import (
    CanonicalEvent,
    EventSource,
    EventType,
    HoldType,
    LineFacts,
    OrderFacts,
)

MAX_EVENT_BYTES = 256 * 1024
Text = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
LongText = Annotated[str, StringConstraints(max_length=4000)]
Amount = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=6, allow_inf_nan=False)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]


def _iso_text(value: object) -> object:
    if not isinstance(value, str | datetime):
        raise ValueError("must be an ISO 8601 time with a time zone, e.g. 2026-11-20T14:03:11Z")
    return value


IsoTime = Annotated[AwareDatetime, BeforeValidator(_iso_text)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomerIn(_Strict):
    id: Text | None = None
    email: Annotated[str, StringConstraints(max_length=320)] | None = None
    tier: Literal["vip", "standard"] | None = None


class LineIn(_Strict):
    sku: Text
    qty: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    price: Amount | None = None


class OrderIn(_Strict):
    ref: Text
    channel: Text | None = None
    fulfillment_type: Literal["in_house", "3pl", "drop_ship", "marketplace"] | None = None
    value: Amount | None = None
    currency: Currency | None = None
    placed_at: IsoTime | None = None
    ship_by: IsoTime | None = None
    promised_by: IsoTime | None = None
    customer: CustomerIn | None = None
    lines: Annotated[list[LineIn], Field(max_length=1000)] | None = None
    shipping_address: Annotated[dict[str, LongText], Field(max_length=30)] | None = None
    ids: Annotated[dict[str, Text], Field(max_length=30)] | None = None


class _Data(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class DataLine(_Strict):
    sku: Text
    qty: Annotated[int, Field(ge=0, le=1_000_000)] | None = None


class AnyData(_Data):
    lines: Annotated[list[DataLine], Field(max_length=1000)] | None = None
    amount: Amount | None = None
    reason: LongText | None = None


class HoldData(AnyData):
    hold_type: HoldType


class HoldReleasedData(AnyData):
    hold_type: HoldType | None = None


class RefundData(AnyData):
    amount: Amount
    refund_id: Text


class InventoryData(AnyData):
    sku: Text
    available: Annotated[int, Field(ge=0, le=10_000_000)] | None = None


class ShippedData(AnyData):
    tracking: Text | None = None


class DeliveryExceptionData(AnyData):
    kind: Literal["delay", "failed_attempt", "damaged", "lost", "returned_to_sender"]


class CancelLine(_Strict):
    sku: Text
    qty: Annotated[int, Field(ge=1, le=1_000_000)] | None = None


class CancelData(AnyData):
    requested_by: Literal["customer", "ops", "auto"]
    lines: Annotated[list[CancelLine], Field(max_length=1000)] | None = None  # type: ignore[assignment]


class ChangeData(AnyData):
    change: Literal["edit", "swap", "address", "ship_method"]


class RejectedData(AnyData):
    message: LongText | None = None


class DisputeData(AnyData):
    amount: Amount
    due_by: IsoTime | None = None


class DriftData(AnyData):
    """A timed drift rule's contradiction, raised by the desk (``domain.drift``)."""

    rule: DriftRule
    evidence: Annotated[dict[Text, Text], Field(max_length=20)] = Field(default_factory=dict)
    hold_type: HoldType | None = None
    placed_at: Text | None = None

    @field_validator("rule")
    @classmethod
    def _timed(cls, rule: DriftRule) -> DriftRule:
        if rule not in TIMED_RULES:
            raise ValueError(f"{rule.value!r} is not a timed drift rule")
        return rule


class ReplyData(AnyData):
    choice: Text | None = None


class TicketData(AnyData):
    ticket_id: Text | None = None


DATA_MODELS: dict[EventType, type[AnyData]] = {
    EventType.HOLD_PLACED: HoldData,
    EventType.HOLD_RELEASED: HoldReleasedData,
    EventType.PAYMENT_REFUNDED: RefundData,
    EventType.INVENTORY_SHORT: InventoryData,
    EventType.FULFILLMENT_SHIPPED: ShippedData,
    EventType.DELIVERY_EXCEPTION: DeliveryExceptionData,
    EventType.CANCEL_REQUESTED: CancelData,
    EventType.CHANGE_REQUESTED: ChangeData,
    EventType.STOPSHIP_REJECTED: RejectedData,
    EventType.DISPUTE_OPENED: DisputeData,
    EventType.CUSTOMER_REPLIED: ReplyData,
    EventType.TICKET_CREATED: TicketData,
    EventType.DRIFT_DETECTED: DriftData,
}
DESK_ONLY = frozenset({EventType.DRIFT_DETECTED})  # event types only the desk itself raises


class EventIn(_Strict):
    id: Text
    source: EventSource
    type: EventType
    occurred_at: IsoTime
    merchant: Text | None = None
    order: OrderIn
    data: dict[str, Any] = Field(default_factory=dict)


def _describe(error: ValidationError, prefix: str = "") -> str:
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in (prefix, *first["loc"]) if part != "")
    message = first["msg"][:1].lower() + first["msg"][1:]
    if first["type"] in ("enum", "literal_error"):
        message = f"unknown value {first['input']!r}"
    return f"{where or 'event'}: {message}"


def parse_event(raw: object) -> CanonicalEvent:
    """Validate one canonical event (a decoded JSON object) into a domain event."""
    if not isinstance(raw, Mapping):
        raise InvalidEvent(f"event: must be a JSON object, got {type(raw).__name__}")
    try:
        envelope = EventIn.model_validate(raw)
    except ValidationError as error:
        raise InvalidEvent(_describe(error)) from None
    if envelope.type in DESK_ONLY and envelope.source is not EventSource.DESK:
        raise InvalidEvent(f"source: {envelope.type.value} is raised by the desk only")
    model = DATA_MODELS.get(envelope.type, AnyData)
    try:
        data = model.model_validate(envelope.data)
    except ValidationError as error:
        raise InvalidEvent(_describe(error, "data")) from None
    return _to_domain(envelope, data)


def parse_json_event(text: str | bytes) -> tuple[CanonicalEvent, str]:
    """Decode and validate one JSON text; returns the event and the raw text kept for audit."""
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "replace"))
    if size > MAX_EVENT_BYTES:
        raise InvalidEvent(f"event: larger than {MAX_EVENT_BYTES} bytes")
    raw_text = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
    try:
        decoded = json.loads(raw_text, parse_float=Decimal)
    except (ValueError, RecursionError) as error:  # JSONDecodeError is a ValueError
        raise InvalidEvent(f"event: malformed JSON ({error})") from None
    return parse_event(decoded), raw_text


def _utc(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC) if moment is not None else None


def _to_domain(envelope: EventIn, data: AnyData) -> CanonicalEvent:
    order = envelope.order
    customer = order.customer or CustomerIn()
    lines = (
        tuple(LineFacts(ln.sku, ln.qty, ln.price) for ln in order.lines) if order.lines else None
    )
    facts = OrderFacts(
        ref=order.ref,
        channel=order.channel,
        fulfillment_type=order.fulfillment_type,
        value=order.value,
        currency=order.currency,
        placed_at=_utc(order.placed_at),
        ship_by=_utc(order.ship_by),
        promised_by=_utc(order.promised_by),
        customer_id=customer.id,
        customer_email=customer.email,
        customer_tier=customer.tier,
        lines=lines,
        shipping_address=order.shipping_address,
        ids=order.ids,
    )
    payload = data.model_dump(mode="json", exclude_none=True)
    return CanonicalEvent(
        id=envelope.id,
        source=envelope.source,
        type=envelope.type,
        occurred_at=envelope.occurred_at.astimezone(UTC),
        order=facts,
        data=payload,
        merchant=envelope.merchant,
    )


def event_to_dict(event: CanonicalEvent) -> dict[str, Any]:
    """The canonical JSON form of an event (what is stored and what replay reads back)."""
    order: dict[str, Any] = {"ref": event.order.ref}
    facts = event.order
    for name in ("channel", "fulfillment_type", "currency"):
        if getattr(facts, name) is not None:
            order[name] = getattr(facts, name)
    if facts.value is not None:
        order["value"] = str(facts.value)
    for name in ("placed_at", "ship_by", "promised_by"):
        moment = getattr(facts, name)
        if moment is not None:
            order[name] = moment.isoformat()
    customer = {
        k: v
        for k, v in (
            ("id", facts.customer_id),
            ("email", facts.customer_email),
            ("tier", facts.customer_tier),
        )
        if v is not None
    }
    if customer:
        order["customer"] = customer
    if facts.lines is not None:
        order["lines"] = [_line_dict(line) for line in facts.lines]
    if facts.shipping_address is not None:
        order["shipping_address"] = dict(facts.shipping_address)
    if facts.ids is not None:
        order["ids"] = dict(facts.ids)
    result: dict[str, Any] = {
        "id": event.id,
        "source": event.source.value,
        "type": event.type.value,
        "occurred_at": event.occurred_at.isoformat(),
        "order": order,
        "data": dict(event.data),
    }
    if event.merchant is not None:
        result["merchant"] = event.merchant
    return result


def _line_dict(line: LineFacts) -> dict[str, Any]:
    out: dict[str, Any] = {"sku": line.sku}
    if line.qty is not None:
        out["qty"] = line.qty
    if line.price is not None:
        out["price"] = str(line.price)
    return out
