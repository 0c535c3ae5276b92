"""Amazon Selling Partner API payloads to canonical events (source ``amazon``).

Accepted:
- Notifications (the SQS message body, or an EventBridge event whose ``detail`` is one):
  ``ORDER_CHANGE``, ``FBA_OUTBOUND_SHIPMENT_STATUS``, ``FULFILLMENT_ORDER_STATUS`` and
  ``SHIPMENT_TRACKING_MILESTONE_CHANGED``; any other notification type is no order fact.
- Orders v0 reads: ``getOrder`` / ``getOrders`` (``{"payload": …}``) and ``getOrderItems``;
  Orders 2026-01-01 reads: ``getOrder`` (``{"order": …}``) and ``searchOrders``
  (``{"orders": […]}``).
- An error response (``{"errors": […]}``) is rejected.

Order reference: the Amazon order id (``AmazonOrderId`` / ``orderId``, ``902-3159896-1390916``).
Multi-Channel Fulfillment notifications name the seller's own order
(``SellerFulfillmentOrderId``), which is then the reference (``fulfillment_type`` ``3pl``:
Amazon ships an order of another channel). A tracking milestone names only the Amazon
fulfillment tracking number (``aftn``), which then stands in as the reference:
``order.ids.tracking_number`` (``services.intake.TRACKING_NUMBER``) repeats it, and intake moves
the event to the order that shipped under that number.
``fulfillment_type`` is ``marketplace`` for Amazon-fulfilled (AFN / FBA) orders.

Event ids name the order and the fact, not the payload, so a read and a notification of the
same fact dedupe: ``amazon:order-<id>-placed``, ``amazon:order-<id>-<status>`` (``unshipped``,
``shipped``, ``canceled`` …) and ``amazon:order-<id>-buyer-cancel`` (a buyer's cancel request,
from ``getOrderItems`` or ``ORDER_CHANGE``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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
from recoverydesk.services.intake import TRACKING_NUMBER

SOURCE = "amazon"
_STATUS_EVENTS = {  # order status (lower case, no separators) -> canonical type
    "canceled": "order.cancelled",
    "cancelled": "order.cancelled",
    "shipped": "fulfillment.shipped",
}
_MILESTONES = {  # SHIPMENT_TRACKING_MILESTONE_CHANGED status code -> (type, exception kind)
    "SHIPPED": ("fulfillment.shipped", None),
    "IN_TRANSIT": ("fulfillment.shipped", None),
    "OUT_FOR_DELIVERY": ("fulfillment.shipped", None),
    "AVAILABLE_FOR_PICKUP": ("fulfillment.shipped", None),
    "DELIVERED": ("fulfillment.delivered", None),
    "DELIVERY_ATTEMPTED": ("delivery.exception", "failed_attempt"),
    "UNDELIVERABLE": ("delivery.exception", "failed_attempt"),
    "DELAYED": ("delivery.exception", "delay"),
    "EXCEPTION": ("delivery.exception", "delay"),
    "DAMAGED": ("delivery.exception", "damaged"),
    "LOST": ("delivery.exception", "lost"),
    "RETURNING": ("delivery.exception", "returned_to_sender"),
    "RETURNED": ("delivery.exception", "returned_to_sender"),
    "RETURNED_TO_SELLER": ("delivery.exception", "returned_to_sender"),
}


def normalize(payload: Any, _headers: Mapping[str, str]) -> Normalized:
    body = as_map(payload, "amazon payload")
    if isinstance(body.get("detail"), Mapping):  # an EventBridge event around the notification
        body = body["detail"]
    if "errors" in body:
        errors = [as_map(e, "errors[]") for e in as_list(body["errors"], "errors")]
        first = errors[0] if errors else {}
        raise InvalidEvent(
            f"amazon payload: an SP-API error response ({text(first.get('code')) or 'error'}: "
            f"{text(first.get('message')) or ''}), not an order or notification"
        )
    kind = text(body.get("NotificationType")) or text(body.get("notificationType"))
    if kind is not None:
        return _notification(kind, body)
    if isinstance(body.get("payload"), Mapping):
        inner = body["payload"]
        if "OrderItems" in inner:
            return _order_items(inner)
        if "Orders" in inner:
            orders = [as_map(o, "Orders[]") for o in as_list(inner["Orders"], "Orders")]
            return _many([ev for o in orders for ev in _order_v0(o)], "the order list is empty")
        if "AmazonOrderId" in inner:
            return Normalized(events=_order_v0(inner))
    if isinstance(body.get("order"), Mapping):
        return Normalized(events=_order_v2026(body["order"]))
    if "orders" in body:
        orders = [as_map(o, "orders[]") for o in as_list(body["orders"], "orders")]
        return _many([ev for o in orders for ev in _order_v2026(o)], "the order list is empty")
    raise InvalidEvent(
        "amazon payload: not an SP-API notification (NotificationType) "
        "nor an Orders API response (payload / order / orders)"
    )


def _many(events: list[dict[str, Any]], empty: str) -> Normalized:
    return Normalized(events=events) if events else skip(empty)


def _amount(value: object) -> tuple[str | None, str | None]:
    """(amount, currency) of an SP-API Money object (v0 ``Amount``/``CurrencyCode``, or
    2026-01-01 ``amount``/``currencyCode``)."""
    if not isinstance(value, Mapping):
        return None, None
    raw = value.get("Amount", value.get("amount"))
    code = currency(value.get("CurrencyCode", value.get("currencyCode")))
    return (money(raw, "amount") if raw is not None else None), code


def _status_key(status: str) -> str:
    return re.sub(r"[^a-z]", "", status.lower())


def _fulfillment_type(channel: str | None) -> str | None:
    return "marketplace" if channel in ("AFN", "AMAZON") else None


def _order_events(
    facts: dict[str, Any], status: str, placed_at: str, updated_at: str
) -> list[dict[str, Any]]:
    """The order is placed; every status but the first one (pending) is its own fact."""
    ref = facts["ref"]
    data = {"status": status}
    events = [
        event(
            id=f"{SOURCE}:order-{ref}-placed",
            source=SOURCE,
            type="order.placed",
            occurred_at=placed_at,
            order=facts,
            data=data,
        )
    ]
    key = _status_key(status)
    if key != "pending":
        kind = _STATUS_EVENTS.get(key, "order.updated")
        events.append(
            event(
                id=f"{SOURCE}:order-{ref}-{key}",
                source=SOURCE,
                type=kind,
                occurred_at=updated_at,
                order=facts,
                data=data,
            )
        )
    return events


def _address(address: object) -> dict[str, str] | None:
    if not isinstance(address, Mapping):
        return None
    flat = {
        str(k): str(v)
        for k, v in address.items()
        if isinstance(v, str | int | float) and not isinstance(v, bool) and v != ""
    }
    return flat or None


def _order_v0(order: Mapping[str, Any]) -> list[dict[str, Any]]:
    oid = need(order, "AmazonOrderId", "order")
    value, code = _amount(order.get("OrderTotal"))
    buyer = order.get("BuyerInfo") if isinstance(order.get("BuyerInfo"), Mapping) else {}
    assert isinstance(buyer, Mapping)
    placed = iso(order.get("PurchaseDate"), "PurchaseDate")
    ids = {
        "amazon_marketplace": text(order.get("MarketplaceId")),
        "amazon_seller_order_id": text(order.get("SellerOrderId")),
        "purchase_order_number": text(buyer.get("PurchaseOrderNumber")),
    }
    facts = {
        "ref": oid,
        "channel": SOURCE,
        "fulfillment_type": _fulfillment_type(text(order.get("FulfillmentChannel"))),
        "value": value,
        "currency": code,
        "placed_at": placed,
        "ship_by": aware(order.get("LatestShipDate")),
        "promised_by": aware(order.get("LatestDeliveryDate")),
        "customer": {"email": text(buyer.get("BuyerEmail"))}
        if text(buyer.get("BuyerEmail"))
        else None,
        "shipping_address": _address(order.get("ShippingAddress")),
        "ids": {k: v for k, v in ids.items() if v},
    }
    status = need(order, "OrderStatus", "order")
    updated = iso(order.get("LastUpdateDate") or order.get("PurchaseDate"), "LastUpdateDate")
    return _order_events(facts, status, placed, updated)


def _order_v2026(order: Mapping[str, Any]) -> list[dict[str, Any]]:
    oid = need(order, "orderId", "order")
    proceeds = order.get("proceeds") if isinstance(order.get("proceeds"), Mapping) else {}
    fulfillment = order.get("fulfillment") if isinstance(order.get("fulfillment"), Mapping) else {}
    buyer = order.get("buyer") if isinstance(order.get("buyer"), Mapping) else {}
    recipient = order.get("recipient") if isinstance(order.get("recipient"), Mapping) else {}
    assert isinstance(proceeds, Mapping)
    assert isinstance(fulfillment, Mapping)
    assert isinstance(buyer, Mapping)
    assert isinstance(recipient, Mapping)
    value, code = _amount(proceeds.get("grandTotal"))
    windows = {
        k: (fulfillment.get(k) or {}).get("latestDateTime")
        if isinstance(fulfillment.get(k), Mapping)
        else None
        for k in ("shipByWindow", "deliverByWindow")
    }
    lines = []
    for raw in as_list(order.get("orderItems") or [], "orderItems"):
        item = as_map(raw, "orderItems[]")
        product = item.get("product") if isinstance(item.get("product"), Mapping) else {}
        assert isinstance(product, Mapping)
        price = product.get("price") if isinstance(product.get("price"), Mapping) else {}
        assert isinstance(price, Mapping)
        unit, _ = _amount(price.get("unitPrice"))
        sku = text(product.get("sellerSku")) or f"asin-{text(product.get('asin'))}"
        line: dict[str, Any] = {"sku": sku[:200], "price": unit}
        if isinstance(item.get("quantityOrdered"), int):
            line["qty"] = item["quantityOrdered"]
        lines.append({k: v for k, v in line.items() if v is not None})
    aliases = {
        f"amazon_{text(a.get('aliasType')) or 'alias'}".lower(): text(a.get("aliasId"))
        for a in (as_map(x, "orderAliases[]") for x in order.get("orderAliases") or [])
    }
    sales = order.get("salesChannel") if isinstance(order.get("salesChannel"), Mapping) else {}
    assert isinstance(sales, Mapping)
    ids = {**aliases, "amazon_marketplace": text(sales.get("marketplaceId"))}
    placed = iso(order.get("createdTime"), "createdTime")
    facts = {
        "ref": oid,
        "channel": SOURCE,
        "fulfillment_type": _fulfillment_type(text(fulfillment.get("fulfilledBy"))),
        "value": value,
        "currency": code,
        "placed_at": placed,
        "ship_by": aware(windows["shipByWindow"]),
        "promised_by": aware(windows["deliverByWindow"]),
        "customer": {"email": text(buyer.get("buyerEmail"))}
        if text(buyer.get("buyerEmail"))
        else None,
        "lines": lines,
        "shipping_address": _address(recipient.get("deliveryAddress")),
        "ids": {k: v for k, v in ids.items() if v},
    }
    status = need(fulfillment, "fulfillmentStatus", "order.fulfillment")
    updated = iso(order.get("lastUpdatedTime") or order.get("createdTime"), "lastUpdatedTime")
    return _order_events(facts, status, placed, updated)


def _cancel(
    oid: str, lines: list[dict[str, Any]], reason: str | None, at: str, order: dict[str, Any]
) -> dict[str, Any]:
    return event(
        id=f"{SOURCE}:order-{oid}-buyer-cancel",
        source=SOURCE,
        type="cancel.requested",
        occurred_at=at,
        order=order,
        data={
            "requested_by": "customer",
            "reason": clip(reason, 4000) or "the buyer asked to cancel",
            "lines": lines,
        },
    )


def _is_true(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _order_items(payload: Mapping[str, Any]) -> Normalized:
    oid = need(payload, "AmazonOrderId", "getOrderItems payload")
    lines: list[dict[str, Any]] = []
    reasons: list[str] = []
    for raw in as_list(payload["OrderItems"], "OrderItems"):
        item = as_map(raw, "OrderItems[]")
        request = item.get("BuyerRequestedCancel")
        if not isinstance(request, Mapping) or not _is_true(request.get("IsBuyerRequestedCancel")):
            continue
        sku = text(item.get("SellerSKU")) or f"asin-{text(item.get('ASIN'))}"
        qty = item.get("QuantityOrdered")
        lines.append({"sku": sku[:200], "qty": qty if isinstance(qty, int) and qty > 0 else None})
        reason = text(request.get("BuyerCancelReason"))
        if reason and reason not in reasons:
            reasons.append(reason)
    if not lines:
        return skip(
            f"order {oid}: no item carries a buyer cancel request; "
            "order items alone are no order fact"
        )
    # Order items carry no time of their own: the request is stamped when received.
    return Normalized(
        events=[
            _cancel(
                oid,
                [{k: v for k, v in ln.items() if v is not None} for ln in lines],
                "; ".join(reasons) or None,
                now_iso(),
                {"ref": oid, "channel": SOURCE},
            )
        ]
    )


def _payload(body: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    outer = as_map(body.get("Payload", body.get("payload")), "notification payload")
    for key in (name, name[:1].lower() + name[1:]):
        if isinstance(outer.get(key), Mapping):
            return as_map(outer[key], name)
    raise InvalidEvent(f"amazon notification: the payload holds no {name}")


def _notification(kind: str, body: Mapping[str, Any]) -> Normalized:
    handler = _NOTIFICATIONS.get(kind)
    if handler is None:
        return skip(f"Amazon notification {kind} is not about an order's progress or exceptions")
    at = iso(body.get("EventTime") or body.get("eventTime"), "EventTime")
    return handler(body, at)


def _order_change(body: Mapping[str, Any], at: str) -> Normalized:
    change = _payload(body, "OrderChangeNotification")
    oid = need(change, "AmazonOrderId", "OrderChangeNotification")
    trigger = change.get("OrderChangeTrigger")
    trigger = trigger if isinstance(trigger, Mapping) else {}
    summary = change.get("Summary") if isinstance(change.get("Summary"), Mapping) else {}
    assert isinstance(summary, Mapping)
    when = aware(trigger.get("TimeOfOrderChange")) or at
    items = [as_map(i, "OrderItems[]") for i in as_list(summary.get("OrderItems") or [], "items")]
    order = {
        "ref": oid,
        "channel": SOURCE,
        "fulfillment_type": _fulfillment_type(text(summary.get("FulfillmentType"))),
        "placed_at": aware(summary.get("PurchaseDate")),
        "ship_by": aware(summary.get("LatestShipDate")),
        "promised_by": aware(summary.get("LatestDeliveryDate")),
        "lines": [
            {k: v for k, v in (("sku", text(i.get("SellerSKU"))), ("qty", i.get("Quantity"))) if v}
            for i in items
            if text(i.get("SellerSKU"))
        ],
        "ids": {"amazon_marketplace": text(summary.get("MarketplaceId"))}
        if text(summary.get("MarketplaceId"))
        else None,
    }
    reason = text(trigger.get("ChangeReason"))
    change_type = text(change.get("OrderChangeType"))
    cancelled_items = [i for i in items if _is_true(i.get("IsBuyerRequestedCancel"))]
    if change_type == "BuyerRequestedChange" and (
        cancelled_items or "cancel" in (reason or "").lower()
    ):
        lines = [
            {k: v for k, v in (("sku", text(i.get("SellerSKU"))), ("qty", i.get("Quantity"))) if v}
            for i in cancelled_items
            if text(i.get("SellerSKU"))
        ]
        return Normalized(events=[_cancel(oid, lines, reason, when, order)])
    status = text(summary.get("OrderStatus"))
    if change_type == "OrderStatusChange" and status:
        key = _status_key(status)
        if key == "pending":
            return skip(f"order {oid} is pending: Amazon has not yet authorized its payment")
        return Normalized(
            events=[
                event(
                    id=f"{SOURCE}:order-{oid}-{key}",
                    source=SOURCE,
                    type=_STATUS_EVENTS.get(key, "order.updated"),
                    occurred_at=when,
                    order=order,
                    data={"status": status, "reason": reason},
                )
            ]
        )
    return skip(f"order change {change_type} ({reason}) of order {oid} asks nothing of the desk")


def _fba_outbound(body: Mapping[str, Any], at: str) -> Normalized:
    note = _payload(body, "FBAOutboundShipmentStatusNotification")
    oid = need(note, "AmazonOrderId", "FBAOutboundShipmentStatusNotification")
    sid = need(note, "AmazonShipmentId", "FBAOutboundShipmentStatusNotification")
    status = need(note, "ShipmentStatus", "FBAOutboundShipmentStatusNotification")
    order = {"ref": oid, "channel": SOURCE, "fulfillment_type": "marketplace"}
    key = _status_key(status)
    if key == "created":
        kind, data = "fulfillment.released", {"shipment_id": sid, "shipment_status": status}
    elif key in ("cancelled", "canceled"):
        kind = "order.updated"
        data = {"shipment_id": sid, "shipment_status": status, "fulfillment_status": "cancelled"}
    else:
        return skip(f"FBA shipment {sid} is {status}, which says nothing new")
    return Normalized(
        events=[
            event(
                id=f"{SOURCE}:fba-shipment-{sid}-{key}",
                source=SOURCE,
                type=kind,
                occurred_at=at,
                order=order,
                data=data,
            )
        ]
    )


_MCF_ORDER = {  # FulfillmentOrderStatus -> (type, extra data)
    "received": ("fulfillment.released", {}),
    "planning": ("fulfillment.released", {}),
    "processing": ("fulfillment.picking", {}),
    "cancelled": ("stopship.acknowledged", {}),
    "unfulfillable": (
        "hold.placed",
        {"hold_type": "inventory", "reason": "Amazon cannot fulfil the order (UNFULFILLABLE)"},
    ),
    "invalid": ("order.updated", {"fulfillment_status": "invalid"}),
}


def _mcf(body: Mapping[str, Any], at: str) -> Normalized:
    note = _payload(body, "FulfillmentOrderStatusNotification")
    ref = need(note, "SellerFulfillmentOrderId", "FulfillmentOrderStatusNotification")
    when = aware(note.get("StatusUpdatedDateTime")) or at
    order = {"ref": ref, "fulfillment_type": "3pl", "ids": {"amazon_mcf_order": ref}}
    events: list[dict[str, Any]] = []
    status = text(note.get("FulfillmentOrderStatus"))
    mapped = _MCF_ORDER.get(_status_key(status or ""))
    if status and mapped:
        kind, extra = mapped
        events.append(
            event(
                id=f"{SOURCE}:mcf-{ref}-{_status_key(status)}",
                source=SOURCE,
                type=kind,
                occurred_at=when,
                order=order,
                data={**extra, "fulfillment_order_status": status},
            )
        )
    shipment = note.get("FulfillmentShipment")
    if isinstance(shipment, Mapping):
        sid = need(shipment, "AmazonShipmentId", "FulfillmentShipment")
        ship_status = text(shipment.get("FulfillmentShipmentStatus")) or ""
        packages = [
            as_map(p, "FulfillmentShipmentPackages[]")
            for p in as_list(shipment.get("FulfillmentShipmentPackages") or [], "packages")
        ]
        numbers = list(
            dict.fromkeys(n for n in (text(p.get("TrackingNumber")) for p in packages) if n)
        )
        if _status_key(ship_status) == "shipped":
            events.append(
                event(
                    id=f"{SOURCE}:mcf-shipment-{sid}-shipped",
                    source=SOURCE,
                    type="fulfillment.shipped",
                    occurred_at=when,
                    order=order,
                    data={
                        "tracking": clip(numbers[0]) if numbers else None,
                        "trackings": numbers if len(numbers) > 1 else None,
                        "carrier": text(packages[0].get("CarrierCode")) if packages else None,
                        "shipment_id": sid,
                    },
                )
            )
        elif _status_key(ship_status).startswith("cancelledby"):
            events.append(
                event(
                    id=f"{SOURCE}:mcf-shipment-{sid}-cancelled",
                    source=SOURCE,
                    type="order.updated",
                    occurred_at=when,
                    order=order,
                    data={"shipment_id": sid, "fulfillment_status": ship_status.lower()},
                )
            )
    returned = note.get("FulfillmentReturnItem")
    if isinstance(returned, Mapping):
        sku = need(returned, "SellerSKU", "FulfillmentReturnItem")
        received = aware(returned.get("ReceivedDateTime")) or when
        qty = returned.get("ReturnedQuantity")
        events.append(
            event(
                id=f"{SOURCE}:mcf-{ref}-return-{sku}-{received}",
                source=SOURCE,
                type="return.received",
                occurred_at=received,
                order=order,
                data={
                    "lines": [{"sku": sku, "qty": qty} if isinstance(qty, int) else {"sku": sku}]
                },
            )
        )
    if events:
        return Normalized(events=events)
    return skip(
        f"fulfillment order {ref} is {status} and its shipment {_ship_status(note)}: "
        "neither is a documented progress or exception state"
    )


def _ship_status(note: Mapping[str, Any]) -> str:
    shipment = note.get("FulfillmentShipment")
    if isinstance(shipment, Mapping):
        return text(shipment.get("FulfillmentShipmentStatus")) or "without status"
    return "absent"


def _tracking(body: Mapping[str, Any], at: str) -> Normalized:
    note = _payload(body, "ShipmentTrackingMilestoneChangedNotification")
    detail = as_map(note.get("trackingDetail"), "trackingDetail")
    identifier = as_map(detail.get("identifier"), "trackingDetail.identifier")
    number = next((text(v) for v in identifier.values() if text(v)), None)
    if number is None:
        raise InvalidEvent("amazon tracking milestone: no tracking identifier")
    latest = as_map(detail.get("latestMilestone"), "trackingDetail.latestMilestone")
    status = as_map(latest.get("status"), "latestMilestone.status")
    code = need(status, "code", "latestMilestone.status")
    mapped = _MILESTONES.get(code)
    if mapped is None:
        return skip(f"shipment {number} is at milestone {code}: it has not left yet")
    kind, exception = mapped
    return Normalized(
        events=[
            event(
                id=f"{SOURCE}:tracking-{number}-{code}",
                source=SOURCE,
                type=kind,
                occurred_at=aware(latest.get("occurredAt")) or at,
                order={"ref": number[:200], "ids": {TRACKING_NUMBER: number[:200]}},
                data={
                    "kind": exception,
                    "tracking": number[:200],
                    "status": code,
                    "sub_status": text(status.get("subCode")),
                    "message": clip(text(status.get("description")), 4000),
                    "tracking_url": text(detail.get("trackingUrl")),
                },
            )
        ]
    )


_NOTIFICATIONS = {
    "ORDER_CHANGE": _order_change,
    "FBA_OUTBOUND_SHIPMENT_STATUS": _fba_outbound,
    "FULFILLMENT_ORDER_STATUS": _mcf,
    "SHIPMENT_TRACKING_MILESTONE_CHANGED": _tracking,
}
