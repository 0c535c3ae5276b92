"""Shopify webhooks (Admin REST shapes) to canonical events.

Order reference: the Shopify order **id** (``450789469``), as a string. It is the one key every
Shopify resource carries (refunds, transactions, fulfillments, fulfillment orders, risks and
disputes name only ``order_id``); the order name (``#1001``) and number travel in ``order.ids``
(``shopify_name``, ``shopify_number``) whenever the payload has them.

The topic comes from the ``X-Shopify-Topic`` header when given, else from the payload's shape.
REST responses wrapped as ``{"order": …}`` are accepted as well as the bare webhook bodies.
Event ids name the Shopify object and the fact, so a redelivery dedupes: a refund is booked per
refund *transaction* (``shopify:transaction-<id>``), the same id ``order_transactions/create``
gives it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recoverydesk.connectors.normalize._common import (
    Normalized,
    as_list,
    as_map,
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


def normalize(payload: Any, headers: Mapping[str, str]) -> Normalized:
    body = as_map(payload, "shopify payload")
    topic = (headers.get("x-shopify-topic") or "").strip().lower()
    if "fulfillment_orders" in body:
        return _many(as_list(body["fulfillment_orders"], "fulfillment_orders"), topic, _fo)
    if "transactions" in body and "refund" not in body:
        return _many(as_list(body["transactions"], "transactions"), topic, _transaction)
    for key, handler in _WRAPPED.items():
        if key in body:
            return handler(as_map(body[key], key), topic, body)
    return _bare(body, topic)


def _bare(body: Mapping[str, Any], topic: str) -> Normalized:  # noqa: PLR0911 - one return per mapped case
    """An unwrapped webhook body: told apart by the topic, else by its fields."""
    family = topic.split("/", 1)[0]
    if family == "orders" or ("line_items" in body and "financial_status" in body):
        return _order(body, topic, body)
    if family == "refunds" or "refund_line_items" in body:
        return _refund(body, topic, body)
    if family == "order_transactions" or ("kind" in body and "order_id" in body):
        return _transaction(body, topic, body)
    if family == "fulfillment_events" or ("fulfillment_id" in body and "status" in body):
        return _fulfillment_event(body, topic, body)
    if family == "fulfillments" or "tracking_numbers" in body:
        return _fulfillment(body, topic, body)
    if family == "disputes" or "evidence_due_by" in body:
        return _dispute(body, topic, body)
    if "recommendation" in body:
        return _risk(body, topic, body)
    raise InvalidEvent(
        "shopify payload: not a Shopify order, refund, transaction, fulfillment, "
        "fulfillment order, risk or dispute (send the X-Shopify-Topic header)"
    )


def _many(items: list[Any], topic: str, handler: Any) -> Normalized:
    events: list[dict[str, Any]] = []
    reasons: list[str] = []
    for item in items:
        result: Normalized = handler(as_map(item, "shopify item"), topic, item)
        events.extend(result.events)
        if result.not_an_exception:
            reasons.append(result.not_an_exception)
    if events:
        return Normalized(events=events)
    return skip("; ".join(reasons) or "the list is empty")


def _order_ref(obj: Mapping[str, Any], what: str) -> dict[str, Any]:
    return {"ref": need(obj, "order_id", what), "channel": SOURCE}


def _line(item: Mapping[str, Any]) -> dict[str, Any]:
    sku = text(item.get("sku")) or f"variant-{text(item.get('variant_id')) or text(item.get('id'))}"
    line: dict[str, Any] = {"sku": sku}
    if isinstance(item.get("quantity"), int):
        line["qty"] = item["quantity"]
    if text(item.get("price")) is not None:
        line["price"] = money(item["price"], "line_items.price")
    return line


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


def _order(order: Mapping[str, Any], topic: str, _raw: object) -> Normalized:
    oid = need(order, "id", "order")
    facts = _order_facts(order)
    status = {
        "financial_status": text(order.get("financial_status")),
        "fulfillment_status": text(order.get("fulfillment_status")),
    }
    if topic == "orders/cancelled" or order.get("cancelled_at"):
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
    placed = topic == "orders/create" or (not topic and created == order.get("updated_at"))
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
                id=f"{SOURCE}:order-{oid}-updated-{updated}",
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


def _transaction(tx: Mapping[str, Any], _topic: str, _raw: object) -> Normalized:
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


def _refund(refund: Mapping[str, Any], _topic: str, _raw: object) -> Normalized:
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


def _fulfillment(ful: Mapping[str, Any], _topic: str, _raw: object) -> Normalized:
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


def _fulfillment_event(fe: Mapping[str, Any], _topic: str, _raw: object) -> Normalized:
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


def _fo(fo: Mapping[str, Any], topic: str, raw: object) -> Normalized:  # noqa: PLR0911 - one return per mapped case
    foid = need(fo, "id", "fulfillment_order")
    status, request = text(fo.get("status")), text(fo.get("request_status"))
    order = _order_ref(fo, "fulfillment_order")
    at = (
        iso(fo.get("updated_at") or fo.get("created_at"), "fulfillment_order.updated_at")
        if (fo.get("updated_at") or fo.get("created_at"))
        else now_iso()
    )
    lines = [
        {
            "sku": f"variant-{text(li.get('variant_id'))}",
            "qty": li.get("fulfillable_quantity") or li.get("quantity"),
        }
        for li in (
            as_map(x, "line_items[]") for x in as_list(fo.get("line_items") or [], "line_items")
        )
    ]
    if topic == "fulfillment_orders/hold_released":
        return Normalized(
            events=[
                event(
                    id=f"{SOURCE}:fulfillment_order-{foid}-released-{at}",
                    source=SOURCE,
                    type="hold.released",
                    occurred_at=at,
                    order=order,
                    data={"fulfillment_order_id": foid},
                )
            ]
        )
    if status == "on_hold" or topic == "fulfillment_orders/placed_on_hold":
        holds = [
            as_map(h, "fulfillment_holds[]")
            for h in as_list(fo.get("fulfillment_holds") or [], "fulfillment_holds")
        ]
        if isinstance(raw, Mapping) and isinstance(raw.get("created_fulfillment_hold"), Mapping):
            holds = [raw["created_fulfillment_hold"]]
        hold = holds[-1] if holds else {}
        reason = text(hold.get("reason")) or "other"
        return Normalized(
            events=[
                event(
                    id=f"{SOURCE}:fulfillment_order-{foid}-hold-{at}",
                    source=SOURCE,
                    type="hold.placed",
                    occurred_at=at,
                    order=order,
                    data={
                        "hold_type": _HOLD_REASONS.get(reason, "warehouse"),
                        "reason": reason,
                        "message": clip(text(hold.get("reason_notes")), 4000),
                        "fulfillment_order_id": foid,
                        "lines": [ln for ln in lines if ln["qty"]],
                    },
                )
            ]
        )
    if request == "cancellation_rejected":
        messages = [
            text(as_map(m, "merchant_requests[]").get("message"))
            for m in as_list(fo.get("merchant_requests") or [], "merchant_requests")
        ]
        return Normalized(
            events=[
                event(
                    id=f"{SOURCE}:fulfillment_order-{foid}-cancellation_rejected",
                    source=SOURCE,
                    type="stopship.rejected",
                    occurred_at=at,
                    order=order,
                    data={
                        "message": next(
                            (m for m in reversed(messages) if m),
                            "the fulfillment service rejected the cancellation",
                        ),
                        "fulfillment_order_id": foid,
                    },
                )
            ]
        )
    if request == "cancellation_accepted" or (status == "cancelled" and request != "unsubmitted"):
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
    if isinstance(raw, Mapping) and "replacement_fulfillment_order" in raw:
        return skip(
            f"fulfillment order {foid} was closed and its lines moved to a replacement "
            "fulfillment order; the order itself is unchanged"
        )
    return skip(
        f"fulfillment order {foid} is {status} ({request}); that is normal progress, "
        "not an exception (a released hold needs the fulfillment_orders/hold_released topic)"
    )


def _risk(risk: Mapping[str, Any], _topic: str, _raw: object) -> Normalized:
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
                # An OrderRisk has no time of its own: it is stamped when received.
                occurred_at=now_iso(),
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


def _dispute(dispute: Mapping[str, Any], _topic: str, _raw: object) -> Normalized:
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
