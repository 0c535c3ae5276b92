"""WooCommerce order webhooks (REST v3 order bodies) to canonical events.

Order reference: the order ``number`` (what the shop shows; equals ``id`` unless a plugin
renumbers), else ``id``; ``order.ids.woocommerce_id`` keeps the id.
The topic comes from ``X-WC-Webhook-Topic`` (``order.created``, ``order.updated``,
``order.deleted`` …); without it the status of the order decides. Times are the ``*_gmt`` fields.
Refunds: WooCommerce has no refund webhook; an order body lists its refunds (``refunds[]``), and
each becomes ``payment.refunded`` (id ``woocommerce:refund-<id>``, so it is booked once however
many order updates repeat it). A bare refund object names no order and is rejected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recoverydesk.connectors.normalize._common import (
    Normalized,
    as_list,
    as_map,
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

SOURCE = "woocommerce"
_STATUS_EVENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "cancelled": ("order.cancelled", {}),
    "failed": ("payment.failed", {"reason": "WooCommerce marked the order failed"}),
    "on-hold": ("hold.placed", {"hold_type": "payment", "reason": "awaiting payment (on-hold)"}),
    "completed": ("fulfillment.shipped", {}),
}


def normalize(payload: Any, headers: Mapping[str, str]) -> Normalized:
    topic = (headers.get("x-wc-webhook-topic") or "").strip().lower()
    if isinstance(payload, list):
        events: list[dict[str, Any]] = []
        for item in payload:
            events.extend(_order(as_map(item, "orders[]"), topic).events)
        return Normalized(events=events) if events else skip("the order list is empty")
    body = as_map(payload, "woocommerce payload")
    if "webhook_id" in body and len(body) == 1:
        return skip(
            "a WooCommerce ping (webhook_id only) confirms the webhook, it carries no order"
        )
    if topic == "order.deleted" or (set(body) == {"id"}):
        oid = need(body, "id", "order.deleted")
        return Normalized(
            events=[
                event(
                    id=f"{SOURCE}:order-{oid}-deleted",
                    source=SOURCE,
                    type="order.cancelled",
                    occurred_at=now_iso(),
                    order={"ref": oid, "channel": SOURCE},
                    data={"reason": "the order was deleted in WooCommerce"},
                )
            ]
        )
    if "status" not in body and "amount" in body and "refunded_by" in body:
        raise InvalidEvent(
            "woocommerce refund object: it names no order; WooCommerce reports "
            "refunds inside the order body (refunds[]) of order.updated"
        )
    if topic and not topic.startswith("order."):
        return skip(f"WooCommerce topic {topic} is not about an order")
    if "line_items" not in body or "status" not in body:
        raise InvalidEvent("woocommerce payload: not a WooCommerce order (no status/line_items)")
    return _order(body, topic)


def _when(order: Mapping[str, Any], field: str) -> str | None:
    gmt = order.get(f"{field}_gmt")
    return iso(gmt, f"{field}_gmt", naive_is_utc=True) if gmt else None


def _facts(order: Mapping[str, Any]) -> dict[str, Any]:
    oid = need(order, "id", "order")
    billing = order.get("billing") if isinstance(order.get("billing"), Mapping) else {}
    shipping = order.get("shipping") if isinstance(order.get("shipping"), Mapping) else {}
    assert isinstance(billing, Mapping)
    assert isinstance(shipping, Mapping)
    customer_id = order.get("customer_id")
    lines = []
    for raw in as_list(order.get("line_items") or [], "line_items"):
        item = as_map(raw, "line_items[]")
        product = (
            text(item.get("variation_id"))
            if item.get("variation_id")
            else text(item.get("product_id"))
        )
        line: dict[str, Any] = {"sku": text(item.get("sku")) or f"product-{product}"}
        if isinstance(item.get("quantity"), int):
            line["qty"] = item["quantity"]
        if item.get("price") is not None:
            line["price"] = money(item["price"], "line_items.price")
        lines.append(line)
    return {
        "ref": text(order.get("number")) or oid,
        "channel": SOURCE,
        "value": money(order["total"], "total") if order.get("total") is not None else None,
        "currency": currency(order.get("currency")),
        "placed_at": _when(order, "date_created"),
        "customer": {
            k: v
            for k, v in (
                ("id", text(customer_id) if customer_id not in (0, "0") else None),
                ("email", text(billing.get("email"))),
            )
            if v
        },
        "lines": lines,
        "shipping_address": {k: str(v) for k, v in shipping.items() if isinstance(v, str) and v}
        or None,
        "ids": {"woocommerce_id": oid},
    }


def _order(order: Mapping[str, Any], topic: str) -> Normalized:
    oid = need(order, "id", "order")
    status = need(order, "status", "order")
    facts = _facts(order)
    modified = _when(order, "date_modified") or _when(order, "date_created") or now_iso()
    events: list[dict[str, Any]] = []
    if topic == "order.created":
        events.append(
            event(
                id=f"{SOURCE}:order-{oid}-created",
                source=SOURCE,
                type="order.placed",
                occurred_at=_when(order, "date_created") or modified,
                order=facts,
                data={"status": status},
            )
        )
    mapped = _STATUS_EVENTS.get(status)
    if mapped:
        kind, data = mapped
        at = (_when(order, "date_completed") if status == "completed" else None) or modified
        events.append(
            event(
                id=f"{SOURCE}:order-{oid}-{status}",
                source=SOURCE,
                type=kind,
                occurred_at=at,
                order=facts,
                data={**data, "status": status},
            )
        )
    for raw in as_list(order.get("refunds") or [], "refunds"):
        refund = as_map(raw, "refunds[]")
        rid = need(refund, "id", "refunds[]")
        events.append(
            event(
                id=f"{SOURCE}:refund-{rid}",
                source=SOURCE,
                type="payment.refunded",
                occurred_at=modified,
                order=facts,
                data={
                    "amount": money(refund.get("total"), "refunds[].total"),
                    "refund_id": rid,
                    "currency": facts["currency"],
                    "reason": text(refund.get("reason")),
                },
            )
        )
    if not events:
        events.append(
            event(
                id=f"{SOURCE}:order-{oid}-updated-{modified}",
                source=SOURCE,
                type="order.updated",
                occurred_at=modified,
                order=facts,
                data={"status": status},
            )
        )
    return Normalized(events=events)
