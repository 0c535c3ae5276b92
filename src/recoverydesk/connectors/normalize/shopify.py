"""Shopify webhooks (Admin REST shapes) to canonical events.

Order reference: the Shopify order **id** (``450789469``), as a string. It is the one key every
Shopify resource carries (refunds, transactions, fulfillments, fulfillment orders, risks and
disputes name only ``order_id``); the order name (``#1001``) and number travel in ``order.ids``
(``shopify_name``, ``shopify_number``) whenever the payload has them. GraphQL ids
(``gid://shopify/Order/450789469``) are read as their number.

The topic comes from the ``X-Shopify-Topic`` header when given, else from the payload's shape.
REST responses wrapped as ``{"order": …}`` are accepted as well as the bare webhook bodies.
Event ids name the Shopify object and the fact, so a redelivery dedupes: a refund is booked per
refund *transaction* (``shopify:transaction-<id>``), the same id ``order_transactions/create``
gives it; a hold by the fulfillment hold's own id (``shopify:fulfillment_hold-<id>-placed`` /
``-released``), whichever of ``fulfillment_orders/placed_on_hold`` and ``fulfillment_holds/added``
reports it. A fact whose body has no id of its own (an order update, a fulfillment order's
release, a risk assessment, a hold without an id) is named by the delivery's
``X-Shopify-Event-Id`` (the same on every retry of that webhook, another for the next change even
in the same second), and only without that header by the body's second-precision ``updated_at``.

Holds: ``fulfillment_holds/added`` and ``fulfillment_holds/released`` come once per hold and name
it (reason, hence hold type), so a release releases that hold type only.
``fulfillment_orders/hold_released`` comes once, when a fulfillment order's *last* hold goes, and
Shopify's body names no hold: unless the body carries the hold, that release has no hold type (the
desk reads it as every hold of the order released). Subscribe to the ``fulfillment_holds/*``
topics for per-hold releases on orders with several fulfillment orders.

Risk: ``orders/risk_assessment_changed`` (an OrderRiskAssessment: ``risk_level``, the provider,
the order, no recommendation) holds the order for fraud on ``high`` or ``medium`` (Shopify's
"investigate"); ``low``, ``none`` and ``pending`` are no order exception, and a fraud hold an
earlier assessment placed stays for the desk to settle (another provider's verdict may stand).
The older OrderRisk resource (``recommendation`` ``cancel`` / ``investigate``) is read too.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from recoverydesk.connectors.normalize._common import (
    Normalized,
    as_list,
    as_map,
    aware,
    clip,
    currency,
    event,
    iso,
    money,
    need,
    now_iso,
    skip,
    text,
)
from recoverydesk.domain.errors import InvalidEvent

SOURCE = "shopify"
RISK_ASSESSMENT_TOPIC = "orders/risk_assessment_changed"

_HOLD_REASONS = {
    "inventory_out_of_stock": "inventory",
    "incorrect_address": "address",
    "high_risk_of_fraud": "fraud",
    "awaiting_payment": "payment",
}
_EVENT_STATUS = {
    "label_printed": ("fulfillment.packed", None),
    "label_purchased": ("fulfillment.packed", None),
    "confirmed": ("fulfillment.packed", None),
    "ready_for_pickup": ("fulfillment.shipped", None),
    "picked_up": ("fulfillment.shipped", None),
    "carrier_picked_up": ("fulfillment.shipped", None),
    "in_transit": ("fulfillment.shipped", None),
    "out_for_delivery": ("fulfillment.shipped", None),
    "delivered": ("fulfillment.delivered", None),
    "attempted_delivery": ("delivery.exception", "failed_attempt"),
    "delayed": ("delivery.exception", "delay"),
    "failure": ("delivery.exception", "failed_attempt"),
}
_OPEN_DISPUTES = frozenset({"needs_response", "under_review"})
_RISK_HOLDS = {"high": "high risk", "medium": "medium risk (investigate)"}
_GID = re.compile(r"gid://shopify/[A-Za-z]+/(\d+)(?:\?.*)?")
_ID_SAFE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


@dataclass(frozen=True, slots=True)
class _Delivery:
    """What the delivery's headers say about the fact: the topic, Shopify's event id (fit for an
    event id) and when Shopify fired the webhook (ISO, when readable)."""

    topic: str
    event_id: str | None = None
    triggered_at: str | None = None

    def when(self) -> str:
        """The time of a fact the body does not date: when Shopify fired it, else received."""
        return self.triggered_at or now_iso()


def normalize(payload: Any, headers: Mapping[str, str]) -> Normalized:
    body = as_map(payload, "shopify payload")
    ctx = _delivery(headers)
    if "fulfillment_orders" in body:
        return _many(as_list(body["fulfillment_orders"], "fulfillment_orders"), ctx, _fo)
    if "transactions" in body and "refund" not in body:
        return _many(as_list(body["transactions"], "transactions"), ctx, _transaction)
    for key, handler in _WRAPPED.items():
        if key in body:
            return handler(as_map(body[key], key), ctx, body)
    return _bare(body, ctx)


def _delivery(headers: Mapping[str, str]) -> _Delivery:
    topic = (headers.get("x-shopify-topic") or headers.get("shopify-topic") or "").strip().lower()
    raw = text(headers.get("x-shopify-event-id") or headers.get("shopify-event-id"))
    event_id = None
    if raw is not None:
        digest = hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()[:32]
        event_id = raw if _ID_SAFE.fullmatch(raw) else f"h{digest}"
    triggered = aware(headers.get("x-shopify-triggered-at") or headers.get("shopify-triggered-at"))
    return _Delivery(topic, event_id, triggered)


def _number(value: str) -> str:
    """The number of a GraphQL id (``gid://shopify/Kind/<number>``), else the value itself."""
    match = _GID.fullmatch(value)
    return match.group(1) if match else value


def _bare(body: Mapping[str, Any], ctx: _Delivery) -> Normalized:  # noqa: PLR0911 - one return per mapped case
    """An unwrapped webhook body: told apart by the topic, else by its fields."""
    family = ctx.topic.split("/", 1)[0]
    if ctx.topic == RISK_ASSESSMENT_TOPIC or "risk_level" in body:
        return _risk_assessment(body, ctx, body)
    if "recommendation" in body and "line_items" not in body:
        return _risk(body, ctx, body)  # a bare OrderRisk, whatever orders/* topic it came under
    if family == "orders" or ("line_items" in body and "financial_status" in body):
        return _order(body, ctx, body)
    if family == "refunds" or "refund_line_items" in body:
        return _refund(body, ctx, body)
    if family == "order_transactions" or ("kind" in body and "order_id" in body):
        return _transaction(body, ctx, body)
    if family == "fulfillment_events" or ("fulfillment_id" in body and "status" in body):
        return _fulfillment_event(body, ctx, body)
    if family == "fulfillments" or "tracking_numbers" in body:
        return _fulfillment(body, ctx, body)
    if family == "disputes" or "evidence_due_by" in body:
        return _dispute(body, ctx, body)
    raise InvalidEvent(
        "shopify payload: not a Shopify order, refund, transaction, fulfillment, "
        "fulfillment order, risk or dispute (send the X-Shopify-Topic header)"
    )


_Handler = Callable[[Mapping[str, Any], _Delivery, object], Normalized]


def _many(items: list[Any], ctx: _Delivery, handler: _Handler) -> Normalized:
    events: list[dict[str, Any]] = []
    reasons: list[str] = []
    for item in items:
        result = handler(as_map(item, "shopify item"), ctx, item)
        events.extend(result.events)
        if result.not_an_exception:
            reasons.append(result.not_an_exception)
    if events:
        return Normalized(events=events)
    return skip("; ".join(reasons) or "the list is empty")


def _order_ref(obj: Mapping[str, Any], what: str) -> dict[str, Any]:
    return {"ref": _number(need(obj, "order_id", what)), "channel": SOURCE}


def _line(item: Mapping[str, Any]) -> dict[str, Any]:
    sku = text(item.get("sku")) or f"variant-{text(item.get('variant_id')) or text(item.get('id'))}"
    line: dict[str, Any] = {"sku": sku}
    if isinstance(item.get("quantity"), int):
        line["qty"] = item["quantity"]
    if text(item.get("price")) is not None:
        line["price"] = money(item["price"], "line_items.price")
    return line


def _fo_line(item: Mapping[str, Any]) -> dict[str, Any]:
    """A fulfillment order line: its own SKU when the payload has it (GraphQL shapes do), else the
    key the order line falls back to (``variant-<variant id>``, else ``variant-<line item id>``)."""
    variant = text(item.get("variant_id")) or text(item.get("line_item_id"))
    return {
        "sku": text(item.get("sku")) or f"variant-{variant}",
        "qty": item.get("fulfillable_quantity") or item.get("quantity"),
    }


def _order_facts(order: Mapping[str, Any]) -> dict[str, Any]:
    customer = order.get("customer") if isinstance(order.get("customer"), Mapping) else {}
    assert isinstance(customer, Mapping)
    email = text(order.get("email")) or text(order.get("contact_email"))
    address = order.get("shipping_address")
    shipping = (
        {k: str(v) for k, v in address.items() if isinstance(v, str | int | float) and v != ""}
        if isinstance(address, Mapping)
        else None
    )
    ids = {
        "shopify_order_id": need(order, "id", "order"),
        "shopify_name": text(order.get("name")),
        "shopify_number": text(order.get("order_number")),
    }
    return {
        "ref": need(order, "id", "order"),
        "channel": SOURCE,
        "value": money(order["total_price"], "total_price") if order.get("total_price") else None,
        "currency": currency(order.get("currency")),
        "placed_at": iso(order["created_at"], "created_at") if order.get("created_at") else None,
        "customer": {k: v for k, v in (("id", text(customer.get("id"))), ("email", email)) if v},
        "lines": [
            _line(as_map(i, "line_items[]"))
            for i in as_list(order.get("line_items") or [], "line_items")
        ],
        "shipping_address": shipping or None,
        "ids": {k: v for k, v in ids.items() if v},
    }


def _order(order: Mapping[str, Any], ctx: _Delivery, _raw: object) -> Normalized:
    oid = need(order, "id", "order")
    facts = _order_facts(order)
    status = {
        "financial_status": text(order.get("financial_status")),
        "fulfillment_status": text(order.get("fulfillment_status")),
    }
    if ctx.topic == "orders/cancelled" or order.get("cancelled_at"):
        return Normalized(
            events=[
                event(
                    id=f"{SOURCE}:order-{oid}-cancelled",
                    source=SOURCE,
                    type="order.cancelled",
                    occurred_at=iso(
                        order.get("cancelled_at") or order.get("updated_at"), "cancelled_at"
                    ),
                    order=facts,
                    data={"reason": text(order.get("cancel_reason")), **status},
                )
            ]
        )
    created = order.get("created_at")
    placed = ctx.topic == "orders/create" or (not ctx.topic and created == order.get("updated_at"))
    if placed:
        return Normalized(
            events=[
                event(
                    id=f"{SOURCE}:order-{oid}-placed",
                    source=SOURCE,
                    type="order.placed",
                    occurred_at=iso(created, "created_at"),
                    order=facts,
                    data=status,
                )
            ]
        )
    updated = iso(order.get("updated_at"), "updated_at")
    return Normalized(
        events=[
            event(
                # an update has no id of its own: Shopify's event id tells two updates of one
                # second apart (the same on a retry); the second-precision time is the fallback
                id=f"{SOURCE}:order-{oid}-updated-{ctx.event_id or updated}",
                source=SOURCE,
                type="order.updated",
                occurred_at=updated,
                order=facts,
                data=status,
            )
        ]
    )


def _money_event(
    tx: Mapping[str, Any],
    kind: str,
    reason: str | None = None,
    lines: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    tid = need(tx, "id", "transaction")
    order = {**_order_ref(tx, "transaction"), "currency": currency(tx.get("currency"))}
    data: dict[str, Any] = {
        "amount": money(tx.get("amount"), "transaction.amount"),
        "currency": currency(tx.get("currency")),
        "gateway": text(tx.get("gateway")),
        "reason": reason,
        "lines": lines,
    }
    if kind == "payment.refunded":
        data["refund_id"] = tid
    return event(
        id=f"{SOURCE}:transaction-{tid}",
        source=SOURCE,
        type=kind,
        occurred_at=iso(tx.get("processed_at") or tx.get("created_at"), "transaction.created_at"),
        order=order,
        data=data,
    )


def _transaction(tx: Mapping[str, Any], _ctx: _Delivery, _raw: object) -> Normalized:
    kind, status = text(tx.get("kind")), text(tx.get("status"))
    tid = need(tx, "id", "transaction")
    if status == "success":
        mapped = {
            "authorization": "payment.authorized",
            "capture": "payment.captured",
            "sale": "payment.captured",
            "void": "payment.voided",
            "refund": "payment.refunded",
        }.get(kind or "")
        if mapped:
            return Normalized(events=[_money_event(tx, mapped)])
    elif status in ("failure", "error") and kind in ("authorization", "sale", "capture"):
        ev = _money_event(tx, "payment.failed", reason=clip(text(tx.get("message"))))
        ev["data"]["operation"] = kind
        return Normalized(events=[ev])
    elif status == "pending":
        return skip(
            f"transaction {tid} is pending; its success or failure comes in a later transaction"
        )
    return skip(f"a {kind} transaction with status {status} moves no order money the desk tracks")


def _refund(refund: Mapping[str, Any], _ctx: _Delivery, _raw: object) -> Normalized:
    rid = need(refund, "id", "refund")
    lines = [
        {
            "sku": _line(as_map(i.get("line_item") or {}, "line_item"))["sku"],
            "qty": i.get("quantity"),
        }
        for i in (
            as_map(x, "refund_line_items[]")
            for x in as_list(refund.get("refund_line_items") or [], "refund_line_items")
        )
        if isinstance(i.get("line_item"), Mapping)
    ]
    events = []
    for raw in as_list(refund.get("transactions") or [], "refund.transactions"):
        tx = as_map(raw, "refund.transactions[]")
        if text(tx.get("kind")) == "refund" and text(tx.get("status")) == "success":
            ev = _money_event(
                tx, "payment.refunded", reason=clip(text(refund.get("note")), 4000), lines=lines
            )
            ev["data"]["shopify_refund_id"] = rid
            events.append(ev)
    if not events:
        return skip(
            f"refund {rid} has no successful refund transaction: "
            "no money moved (restock or adjustment only)"
        )
    return Normalized(events=events)


def _fulfillment(ful: Mapping[str, Any], _ctx: _Delivery, _raw: object) -> Normalized:
    fid = need(ful, "id", "fulfillment")
    status = text(ful.get("status")) or "unknown"
    shipment = text(ful.get("shipment_status"))
    order = _order_ref(ful, "fulfillment")
    at = iso(ful.get("updated_at") or ful.get("created_at"), "fulfillment.updated_at")
    data = {
        "tracking": clip(text(ful.get("tracking_number"))),
        "carrier": text(ful.get("tracking_company")),
        "fulfillment_id": fid,
        "lines": [
            {
                "sku": _line(as_map(i, "line_items[]"))["sku"],
                "qty": as_map(i, "line_items[]").get("quantity"),
            }
            for i in as_list(ful.get("line_items") or [], "line_items")
        ],
    }
    if status == "success" and shipment == "delivered":
        kind, suffix = "fulfillment.delivered", "delivered"
    elif status == "success":
        kind, suffix = "fulfillment.shipped", "success"
    elif status in ("pending", "open"):
        kind, suffix = "fulfillment.released", status
    elif status in ("cancelled", "failure", "error"):
        kind, suffix = "order.updated", status
        data["fulfillment_status"] = status
    else:
        return skip(f"fulfillment {fid} has status {status!r}, which says nothing new")
    return Normalized(
        events=[
            event(
                id=f"{SOURCE}:fulfillment-{fid}-{suffix}",
                source=SOURCE,
                type=kind,
                occurred_at=at,
                order=order,
                data=data,
            )
        ]
    )


def _fulfillment_event(fe: Mapping[str, Any], _ctx: _Delivery, _raw: object) -> Normalized:
    eid = need(fe, "id", "fulfillment_event")
    status = text(fe.get("status")) or "unknown"
    mapped = _EVENT_STATUS.get(status)
    if mapped is None:
        return skip(f"fulfillment event status {status!r} is no fulfilment progress or exception")
    kind, exception = mapped
    return Normalized(
        events=[
            event(
                id=f"{SOURCE}:fulfillment_event-{eid}",
                source=SOURCE,
                type=kind,
                occurred_at=iso(fe.get("happened_at") or fe.get("created_at"), "happened_at"),
                order=_order_ref(fe, "fulfillment_event"),
                data={
                    "kind": exception,
                    "fulfillment_id": text(fe.get("fulfillment_id")),
                    "status": status,
                    "message": clip(text(fe.get("message")), 4000),
                },
            )
        ]
    )


_HOLD_RELEASED = frozenset({"fulfillment_orders/hold_released", "fulfillment_holds/released"})
_HOLD_PLACED = frozenset({"fulfillment_orders/placed_on_hold", "fulfillment_holds/added"})


def _fo(fo: Mapping[str, Any], ctx: _Delivery, raw: object) -> Normalized:  # noqa: PLR0911 - one return per mapped case
    foid = _number(need(fo, "id", "fulfillment_order"))
    status, request = text(fo.get("status")), text(fo.get("request_status"))
    order = _order_ref(fo, "fulfillment_order")
    stamp = fo.get("updated_at") or fo.get("created_at")
    at = iso(stamp, "fulfillment_order.updated_at") if stamp else ctx.when()
    # the webhook's own fields beside the fulfillment order (a list item has none)
    envelope: Mapping[str, Any] = raw if isinstance(raw, Mapping) and raw is not fo else {}
    facts = _FoFacts(foid, order, at, ctx, envelope)
    if ctx.topic in _HOLD_RELEASED:
        return facts.released()
    if status == "on_hold" or ctx.topic in _HOLD_PLACED:
        lines = [
            _fo_line(as_map(x, "line_items[]"))
            for x in as_list(fo.get("line_items") or [], "line_items")
        ]
        holds = [
            as_map(h, "fulfillment_holds[]")
            for h in as_list(fo.get("fulfillment_holds") or [], "fulfillment_holds")
        ]
        return facts.placed(holds, [ln for ln in lines if ln["qty"]])
    rejected = ctx.topic == "fulfillment_orders/cancellation_request_rejected"
    if request == "cancellation_rejected" or rejected:
        return facts.rejected()
    accepted = ctx.topic == "fulfillment_orders/cancellation_request_accepted"
    if (
        request == "cancellation_accepted"
        or accepted
        or (status == "cancelled" and request != "unsubmitted")
    ):
        return Normalized(
            events=[
                event(
                    id=f"{SOURCE}:fulfillment_order-{foid}-cancellation_accepted",
                    source=SOURCE,
                    type="stopship.acknowledged",
                    occurred_at=at,
                    order=order,
                    data={"fulfillment_order_id": foid},
                )
            ]
        )
    if request == "cancellation_requested":
        return skip(
            f"fulfillment order {foid}: a cancellation request is on its way to the fulfillment "
            "service; its acceptance or rejection is the fact the desk acts on"
        )
    if "replacement_fulfillment_order" in envelope:
        return skip(
            f"fulfillment order {foid} was closed and its lines moved to a replacement "
            "fulfillment order; the order itself is unchanged"
        )
    return skip(
        f"fulfillment order {foid} is {status} ({request}); that is normal progress, "
        "not an exception (a released hold needs the fulfillment_orders/hold_released topic)"
    )


def _hold_type(hold: Mapping[str, Any]) -> tuple[str, str]:
    """The desk's hold type and Shopify's reason (lower case) of a fulfillment hold."""
    reason = (text(hold.get("reason")) or "other").lower()
    return _HOLD_REASONS.get(reason, "warehouse"), reason


@dataclass(frozen=True, slots=True)
class _FoFacts:
    """The hold and cancellation facts of one fulfillment order webhook."""

    foid: str
    order: dict[str, Any]
    at: str
    ctx: _Delivery
    envelope: Mapping[str, Any]

    def _id(self, fact: str, hold: Mapping[str, Any] | None) -> str:
        """The hold's own id when it has one; else Shopify's event id for this delivery; else
        the fulfillment order's second-precision time (a body read without its headers)."""
        hid = text(hold.get("id")) if hold else None
        if hid is not None:
            return f"{SOURCE}:fulfillment_hold-{_number(hid)}-{fact}"
        suffix = "hold" if fact == "placed" else fact
        return f"{SOURCE}:fulfillment_order-{self.foid}-{suffix}-{self.ctx.event_id or self.at}"

    def _named_hold(self, *keys: str) -> Mapping[str, Any] | None:
        for key in keys:
            if isinstance(self.envelope.get(key), Mapping):
                return as_map(self.envelope[key], key)
        return None

    def released(self) -> Normalized:
        # fulfillment_holds/released names the hold; fulfillment_orders/hold_released (the
        # fulfillment order's last hold gone) names none, so its release has no hold type
        hold = self._named_hold("fulfillment_hold")
        data: dict[str, Any] = {"fulfillment_order_id": self.foid}
        if hold is not None:
            data["hold_type"], data["reason"] = _hold_type(hold)
        return Normalized(
            events=[
                event(
                    id=self._id("released", hold),
                    source=SOURCE,
                    type="hold.released",
                    occurred_at=self.at,
                    order=self.order,
                    data=data,
                )
            ]
        )

    def placed(self, holds: list[Mapping[str, Any]], lines: list[dict[str, Any]]) -> Normalized:
        # since 2024-10 placed_on_hold names the hold it was for (the list may already be empty);
        # fulfillment_holds/added names its hold; else the fulfillment order's latest hold
        named = self._named_hold("created_fulfillment_hold", "fulfillment_hold")
        hold = named if named is not None else (holds[-1] if holds else {})
        hold_type, reason = _hold_type(hold)
        return Normalized(
            events=[
                event(
                    id=self._id("placed", hold),
                    source=SOURCE,
                    type="hold.placed",
                    occurred_at=self.at,
                    order=self.order,
                    data={
                        "hold_type": hold_type,
                        "reason": reason,
                        "message": clip(text(hold.get("reason_notes")), 4000),
                        "fulfillment_order_id": self.foid,
                        "lines": lines,
                    },
                )
            ]
        )

    def rejected(self) -> Normalized:
        # the fulfillment service's reason is the webhook's own ``message``; the merchant's
        # request text (merchant_requests) is what was asked, not why it was refused
        reason = clip(text(self.envelope.get("message")), 4000)
        return Normalized(
            events=[
                event(
                    id=f"{SOURCE}:fulfillment_order-{self.foid}-cancellation_rejected",
                    source=SOURCE,
                    type="stopship.rejected",
                    occurred_at=self.at,
                    order=self.order,
                    data={
                        "message": reason
                        or "the fulfillment service rejected the cancellation and gave no reason",
                        "fulfillment_order_id": self.foid,
                    },
                )
            ]
        )


def _risk(risk: Mapping[str, Any], ctx: _Delivery, _raw: object) -> Normalized:
    rid = need(risk, "id", "risk")
    recommendation = text(risk.get("recommendation"))
    if recommendation not in ("cancel", "investigate"):
        return skip(f"order risk {rid} recommends {recommendation!r}: nothing to hold")
    return Normalized(
        events=[
            event(
                id=f"{SOURCE}:risk-{rid}",
                source=SOURCE,
                type="hold.placed",
                # An OrderRisk has no time of its own: when Shopify fired it, else received.
                occurred_at=ctx.when(),
                order=_order_ref(risk, "risk"),
                data={
                    "hold_type": "fraud",
                    "reason": clip(text(risk.get("message")), 4000),
                    "recommendation": recommendation,
                    "score": text(risk.get("score")),
                },
            )
        ]
    )


def _risk_assessment(body: Mapping[str, Any], ctx: _Delivery, _raw: object) -> Normalized:
    """``orders/risk_assessment_changed``: one provider's verdict on the order (no recommendation,
    no id of its own; ``order_id`` and ``created_at`` may be null)."""
    level = (text(body.get("risk_level")) or "").lower()
    ref = text(body.get("order_id")) or text(body.get("admin_graphql_api_order_id"))
    if ref is None:
        raise InvalidEvent(
            "shopify risk assessment: no order_id or admin_graphql_api_order_id, "
            "so it cannot be tied to an order"
        )
    ref = _number(ref)
    provider_id = text(body.get("provider_id"))
    provider = text(body.get("provider_title")) or (
        f"the app {provider_id}" if provider_id else "Shopify"
    )
    if level not in _RISK_HOLDS:
        if level in ("low", "none", "pending"):
            why = "not known yet" if level == "pending" else "no reason to hold it"
            return skip(
                f"{provider} assessed order {ref}'s risk as {level}: {why}. A fraud hold an "
                "earlier assessment placed stays until released in Shopify or settled by the desk "
                "(another provider's verdict may still stand)"
            )
        return skip(
            f"{provider} gave order {ref} the unknown risk level {level!r}: nothing to hold"
        )
    created = body.get("created_at")
    key = (
        ctx.event_id
        or hashlib.sha256(
            "|".join((provider_id or "shopify", level, text(created) or "")).encode()
        ).hexdigest()[:24]
    )
    return Normalized(
        events=[
            event(
                id=f"{SOURCE}:risk_assessment-{ref}-{key}",
                source=SOURCE,
                type="hold.placed",
                occurred_at=iso(created, "risk_assessment.created_at") if created else ctx.when(),
                order={"ref": ref, "channel": SOURCE},
                data={
                    "hold_type": "fraud",
                    "reason": f"{provider} assessed the order as {_RISK_HOLDS[level]}",
                    "risk_level": level,
                    "provider": provider,
                },
            )
        ]
    )


def _dispute(dispute: Mapping[str, Any], _ctx: _Delivery, _raw: object) -> Normalized:
    did = need(dispute, "id", "dispute")
    status = text(dispute.get("status"))
    if status not in _OPEN_DISPUTES:
        return skip(f"dispute {did} is already {status}; only an open dispute needs the desk")
    if text(dispute.get("order_id")) is None:
        raise InvalidEvent(f"shopify dispute {did}: no order_id, so it cannot be tied to an order")
    return Normalized(
        events=[
            event(
                id=f"{SOURCE}:dispute-{did}",
                source=SOURCE,
                type="dispute.opened",
                occurred_at=iso(dispute.get("initiated_at"), "initiated_at"),
                order={
                    **_order_ref(dispute, "dispute"),
                    "currency": currency(dispute.get("currency")),
                },
                data={
                    "amount": money(dispute.get("amount"), "dispute.amount"),
                    "currency": currency(dispute.get("currency")),
                    "reason": text(dispute.get("reason")),
                    "due_by": iso(dispute["evidence_due_by"], "evidence_due_by")
                    if dispute.get("evidence_due_by")
                    else None,
                    "dispute_type": text(dispute.get("type")),
                    "network_reason_code": text(dispute.get("network_reason_code")),
                },
            )
        ]
    )


_WRAPPED = {
    "order": _order,
    "refund": _refund,
    "transaction": _transaction,
    "fulfillment": _fulfillment,
    "fulfillment_event": _fulfillment_event,
    "fulfillment_order": _fo,
    "risk": _risk,
    "dispute": _dispute,
}
