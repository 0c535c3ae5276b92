"""What a disputed order tells a bank, read from the order 360 and its events: the text of
Stripe's evidence fields the order fills (product, customer, shipping), the card checks the
payment events reported, the messages with the customer and the order's story in plain sentences
(the pack's ``uncategorized_text``). Pure: ``domain.evidence`` assembles the pack from these."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from recoverydesk.domain.cases import TimelineEntry
from recoverydesk.domain.events import CanonicalEvent, EventType
from recoverydesk.domain.orders import OrderView

# -- what the order tells ------------------------------------------------------------------------


def order_fields(order: OrderView, events: Sequence[CanonicalEvent]) -> dict[str, str]:
    address = _address(order.shipping_address or {})
    shipped = order.fulfillment_times.get("shipped")
    values = {
        "product_description": _products(order),
        "customer_email_address": order.customer_email,
        "customer_name": _name(order.shipping_address or {}),
        "customer_purchase_ip": _purchase_ip(events),
        "shipping_address": address,
        "shipping_carrier": ", ".join(_carriers(order, events)),
        "shipping_tracking_number": ", ".join(order.tracking),
        "shipping_date": _day(shipped) if shipped and order.shipped else None,
    }
    return {k: v for k, v in values.items() if v}


def _products(order: OrderView) -> str | None:
    lines = [
        f"{line.qty or 1} x {line.sku}"
        + (f" at {line.price} {order.currency or ''}".rstrip() if line.price is not None else "")
        for line in order.lines.values()
        if not line.cancelled
    ]
    total = f"order {order.ref}, total {order.value} {order.currency or ''}".rstrip()
    if not lines:
        return total if order.value is not None else None
    return "; ".join(lines) + (f" ({total})" if order.value is not None else "")


_ADDRESS_PARTS = (
    ("company",),
    ("address1", "address_1", "street", "addressline1", "line1"),
    ("address2", "address_2", "addressline2", "line2"),
    ("city",),
    ("province_code", "province", "state", "region", "stateorregion"),
    ("zip", "postcode", "postalcode", "postal_code"),
    ("country_code", "country", "country_id", "countrycode"),
)


def _address(address: Mapping[str, str]) -> str | None:
    lowered = {k.lower(): str(v).strip() for k, v in address.items() if str(v).strip()}
    parts = [_name(address)] + [
        next((lowered[k] for k in keys if k in lowered), None) for keys in _ADDRESS_PARTS
    ]
    found = [part for part in parts if part]
    return ", ".join(found) if len(found) > 1 else None


def _name(address: Mapping[str, str]) -> str | None:
    lowered = {k.lower(): str(v).strip() for k, v in address.items() if str(v).strip()}
    if lowered.get("name"):
        return lowered["name"]
    first = lowered.get("first_name") or lowered.get("firstname")
    last = lowered.get("last_name") or lowered.get("lastname")
    return " ".join(p for p in (first, last) if p) or None


_CARRIER_NAMES = {"ups": "UPS", "usps": "USPS", "fedex": "FedEx", "dhl": "DHL", "dpd": "DPD"}
_CARRIER_EVENTS = frozenset(
    {EventType.FULFILLMENT_SHIPPED, EventType.FULFILLMENT_DELIVERED, EventType.DELIVERY_EXCEPTION}
)


def _carriers(order: OrderView, events: Sequence[CanonicalEvent]) -> list[str]:
    slugs = [str(e.data["carrier"]).lower() for e in events if e.data.get("carrier")]
    slugs += [order.carrier] if order.carrier else []
    return [_CARRIER_NAMES.get(s, s) for s in dict.fromkeys(slugs)]


def _purchase_ip(events: Sequence[CanonicalEvent]) -> str | None:
    for event in events:
        for key in ("customer_ip", "browser_ip", "client_ip"):
            if event.data.get(key):
                return str(event.data[key])
    return None


_PAYMENT_EVENTS = frozenset({EventType.PAYMENT_AUTHORIZED, EventType.PAYMENT_CAPTURED})
AVS_KEYS = ("avs_check", "avs_result", "address_line1_check", "address_postal_code_check")
CVC_KEYS = ("cvc_check", "cvc_result", "cvv_result")
_PASSED = frozenset({"pass", "passed", "match", "matched", "y", "m"})


def card_checks(events: Sequence[CanonicalEvent]) -> dict[str, str]:
    """The card checks the payment events reported (in ``data`` or ``data.checks``, as
    Stripe's ``payment_method_details.card.checks`` has them): check -> result, latest wins."""
    found: dict[str, str] = {}
    for event in events:
        if event.type not in _PAYMENT_EVENTS:
            continue
        nested = event.data.get("checks")
        for source in (event.data, nested if isinstance(nested, Mapping) else {}):
            for key in (*AVS_KEYS, *CVC_KEYS):
                if source.get(key) not in (None, ""):
                    found[key] = str(source[key])
    return found


def checks_passed(checks: Mapping[str, str], keys: Sequence[str]) -> bool:
    results = [checks[k].strip().lower() for k in keys if k in checks]
    return bool(results) and all(r in _PASSED for r in results)


# -- the story -----------------------------------------------------------------------------------


def order_story(
    order: OrderView,
    events: Sequence[CanonicalEvent],
    checks: Mapping[str, str],
    talk: Sequence[str],
) -> str:
    """The summary a bank reads: the order's timeline in plain sentences."""
    lines = [_placed(order), *_paid(order, events, checks)]
    lines += _shipped(order, _carriers(order, events))
    scans = [_scan(e) for e in events if e.type in _CARRIER_EVENTS]
    if scans:
        lines += ["Carrier scans:", *(f"- {s}" for s in scans)]
    if talk:
        lines += ["Communication with the customer:", *(f"- {t}" for t in talk)]
    return "\n".join(line for line in lines if line)


def _placed(order: OrderView) -> str:
    when = f" on {_at(order.placed_at)}" if order.placed_at else ""
    value = f" for {_money(order.value, order.currency)}" if order.value is not None else ""
    who = f" by {order.customer_email}" if order.customer_email else ""
    return f"Order {order.ref} was placed{when}{value}{who}."


_PAID = ((EventType.PAYMENT_AUTHORIZED, "authorized"), (EventType.PAYMENT_CAPTURED, "captured"))


def _paid(
    order: OrderView, events: Sequence[CanonicalEvent], checks: Mapping[str, str]
) -> list[str]:
    said = []
    for kind, verb in _PAID:
        first = next((e for e in events if e.type is kind), None)
        if first is not None:
            said.append(f"Payment {verb} on {_at(first.occurred_at)}.")
    if checks:
        said.append("Card checks: " + ", ".join(f"{k}: {v}" for k, v in checks.items()) + ".")
    if order.payment.refunded:
        said.append(f"Refunded so far: {_money(order.payment.refunded, order.currency)}.")
    return said


def _shipped(order: OrderView, carriers: Sequence[str]) -> list[str]:
    times = order.fulfillment_times
    if order.cancelled:
        when = f" on {_at(order.cancelled_at)}" if order.cancelled_at else ""
        return [f"The order was cancelled{when}."]
    if not order.shipped:
        return ["The order has not shipped."]
    when = f" on {_at(times['shipped'])}" if "shipped" in times else ""
    by = f" by {', '.join(carriers)}" if carriers else ""
    tracking = f", tracking {', '.join(order.tracking)}" if order.tracking else ""
    where = _address(order.shipping_address or {})
    said = [f"Shipped{when}{by}{tracking}" + (f" to {where}" if where else "") + "."]
    if "delivered" in times:
        said.append(f"Delivered on {_at(times['delivered'])}.")
    return said


def _money(amount: object, currency: str | None) -> str:
    return f"{amount} {currency}" if currency else str(amount)


_SCAN_WORDS = {
    EventType.FULFILLMENT_SHIPPED: "in transit",
    EventType.FULFILLMENT_DELIVERED: "delivered",
    EventType.DELIVERY_EXCEPTION: "delivery exception",
}


def _scan(event: CanonicalEvent) -> str:
    what = _SCAN_WORDS[event.type]
    if event.type is EventType.DELIVERY_EXCEPTION and event.data.get("kind"):
        what += f" ({event.data['kind']})"
    detail = event.data.get("message") or event.data.get("status_detail")
    tracking = f" [{event.data['tracking']}]" if event.data.get("tracking") else ""
    return f"{_at(event.occurred_at)}: {what}{tracking}" + (f": {detail}" if detail else "")


_MESSAGE_KINDS = frozenset({"decision_offered", "message_sent"})


def communication(events: Sequence[CanonicalEvent], timeline: Sequence[TimelineEntry]) -> list[str]:
    """The messages between the merchant and the customer, oldest first: tickets, the
    customer's replies and the messages the desk sent (internal notes are left out)."""
    said = [(e.occurred_at, _said(e)) for e in events if e.type in _TALK_EVENTS]
    for entry in timeline:
        template = entry.detail.get("template")
        if entry.kind in _MESSAGE_KINDS or (template and entry.kind != "note"):
            said.append((entry.at, f"merchant sent the message {template or entry.kind!r}"))
    return [f"{_at(at)} {text}" for at, text in sorted(said, key=lambda pair: pair[0])]


_TALK_EVENTS = frozenset({EventType.TICKET_CREATED, EventType.CUSTOMER_REPLIED})


def _said(event: CanonicalEvent) -> str:
    data = event.data
    if event.type is EventType.TICKET_CREATED:
        ticket = f" {data['ticket_id']}" if data.get("ticket_id") else ""
        return f"ticket{ticket} opened" + (f": {data['subject']}" if data.get("subject") else "")
    if data.get("message"):
        return f"customer wrote: {clip(str(data['message']), 1000)}"
    return f"customer chose {data['choice']}" if data.get("choice") else "customer replied"


def _at(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def clip(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, clipped with an ellipsis."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)].rstrip() + "…" if limit > 1 else ""
