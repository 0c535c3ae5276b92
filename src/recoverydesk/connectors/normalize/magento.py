"""Magento 2 / Adobe Commerce REST objects to canonical events (source ``magento``).

Accepted: an order (``GET /V1/orders/{id}``), an order search result (``{"items": [orders],
"search_criteria": …}``), an invoice (``GET /V1/invoices/{id}``), a credit memo
(``GET /V1/creditmemo/{id}``) and a shipment (``GET /V1/shipment/{id}``). Magento has no webhook
of its own; these are the objects its REST API (and the Adobe Commerce webhooks) return.

Order reference: the order **entity id** (``entity_id`` of the order, ``order_id`` of its
invoices, credit memos and shipments), as a string: it is the one key every sales object
carries; the order number shown to the customer (``increment_id``, ``000000003``) travels in
``order.ids.magento_increment_id``. Times are UTC without a zone (``2017-08-21 22:22:19``).

- Order ``state``: ``new`` is ``order.placed`` (id ``magento:order-<id>-placed``); ``canceled``
  is ``order.cancelled``; ``holded`` is ``hold.placed``; ``payment_review`` is a fraud
  ``hold.placed``; any other state is ``order.updated`` (id names the state and update time).
- A paid invoice (``state`` 2) is ``payment.captured`` (``magento:invoice-<id>``); an open one
  (1) or a cancelled one (3) moved no money.
- A refunded credit memo (``state`` 2) is ``payment.refunded`` (``magento:creditmemo-<id>``).
- A shipment is ``fulfillment.shipped`` with its tracks (``magento:shipment-<id>``).

The request bodies of ``POST /V1/order/{id}/refund`` and ``…/ship`` are what a client sends to
Magento, not what Magento reports: they name no order (it is in the URL) nor amount, and are
rejected; the credit memo and the shipment they create are the facts.
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
    skip,
    text,
)
from recoverydesk.domain.errors import InvalidEvent

SOURCE = "magento"
_PAID, _REFUNDED = 2, 2  # invoice / credit memo state: 1 open, 2 paid|refunded, 3 canceled


def normalize(payload: Any, _headers: Mapping[str, str]) -> Normalized:
    body = as_map(payload, "magento payload")
    if "message" in body and ("parameters" in body or "trace" in body or len(body) == 1):
        raise InvalidEvent(
            f"magento payload: an API error ({text(body.get('message'))}), not a sales object"
        )
    if "search_criteria" in body:
        events: list[dict[str, Any]] = []
        for raw in as_list(body.get("items") or [], "items"):
            events.extend(_dispatch(as_map(raw, "items[]")).events)
        return Normalized(events=events) if events else skip("the search result is empty")
    return _dispatch(body)


def _dispatch(body: Mapping[str, Any]) -> Normalized:
    if "order_id" not in body and "entity_id" not in body:
        if "items" in body and ("tracks" in body or "arguments" in body or "notify" in body):
            what = "ship" if "tracks" in body else "refund"
            raise InvalidEvent(
                f"magento payload: a POST /V1/order/{{orderId}}/{what} request body, which a "
                f"client sends to Magento; it names no order (it is in the URL) and no amount. "
                f"Send the {'shipment' if what == 'ship' else 'credit memo'} Magento created"
            )
        raise InvalidEvent(
            "magento payload: not a Magento order, invoice, credit memo or shipment "
            "(no entity_id/order_id)"
        )
    if isinstance(body.get("state"), str) and "order_id" not in body:
        return _order(body)
    if "tracks" in body or "packages" in body:
        return _shipment(body)
    if any(k in body for k in ("adjustment_positive", "adjustment_negative", "creditmemo_status")):
        return _creditmemo(body)
    if "grand_total" in body and "order_id" in body:
        return _invoice(body)
    raise InvalidEvent(
        "magento payload: not a Magento order, invoice, credit memo or shipment "
        "(no state/grand_total/tracks)"
    )


def _when(obj: Mapping[str, Any], key: str) -> str:
    return iso(obj.get(key), f"{key}", naive_is_utc=True)


def _lines(items: list[Any], qty_key: str, *, priced: bool) -> list[dict[str, Any]]:
    lines = []
    for raw in items:
        item = as_map(raw, "items[]")
        if item.get("parent_item_id") or item.get("parent_item"):
            continue  # a configurable product's child repeats its parent's line
        sku = text(item.get("sku")) or f"product-{text(item.get('product_id'))}"
        line: dict[str, Any] = {"sku": sku[:200]}
        qty = item.get(qty_key)
        if isinstance(qty, int | float) and not isinstance(qty, bool) and qty == int(qty):
            line["qty"] = int(qty)
        if priced and item.get("price") is not None:
            line["price"] = money(item["price"], "items[].price")
        lines.append(line)
    return lines


def _order_ref(obj: Mapping[str, Any], what: str) -> dict[str, Any]:
    return {
        "ref": need(obj, "order_id", what),
        "channel": SOURCE,
        "currency": currency(obj.get("order_currency_code")),
    }


def _order(order: Mapping[str, Any]) -> Normalized:
    oid = need(order, "entity_id", "order")
    state = need(order, "state", "order")
    status = text(order.get("status"))
    assignments = (order.get("extension_attributes") or {}).get("shipping_assignments") or []
    address: Mapping[str, Any] = {}
    for raw in as_list(assignments, "shipping_assignments"):
        shipping = as_map(raw, "shipping_assignments[]").get("shipping")
        if isinstance(shipping, Mapping) and isinstance(shipping.get("address"), Mapping):
            address = shipping["address"]
            break
    shipping_address = {
        k: ", ".join(map(str, v)) if isinstance(v, list) else str(v)
        for k, v in address.items()
        if k in ("firstname", "lastname", "street", "city", "region", "postcode", "country_id")
        and v not in (None, "", [])
    }
    customer = {
        "id": text(order.get("customer_id")) if not order.get("customer_is_guest") else None,
        "email": text(order.get("customer_email")),
    }
    facts = {
        "ref": oid,
        "channel": SOURCE,
        "value": money(order["grand_total"], "grand_total")
        if order.get("grand_total") is not None
        else None,
        "currency": currency(order.get("order_currency_code")),
        "placed_at": _when(order, "created_at") if order.get("created_at") else None,
        "customer": {k: v for k, v in customer.items() if v},
        "lines": _lines(as_list(order.get("items") or [], "items"), "qty_ordered", priced=True),
        "shipping_address": shipping_address or None,
        "ids": {"magento_increment_id": text(order.get("increment_id"))}
        if text(order.get("increment_id"))
        else None,
    }
    data = {"state": state, "status": status}
    updated = _when(order, "updated_at") if order.get("updated_at") else None
    if state == "new":
        kind, suffix, at = "order.placed", "placed", _when(order, "created_at")
    elif state == "canceled":
        kind, suffix, at = "order.cancelled", "canceled", updated or _when(order, "created_at")
    elif state in ("holded", "payment_review"):
        kind, suffix = "hold.placed", f"{state}-{updated}"
        at = updated or _when(order, "created_at")
        data["hold_type"] = "fraud" if state == "payment_review" else "warehouse"
        data["reason"] = f"Magento order {state} ({status})"
    else:
        at = updated or _when(order, "created_at")
        kind, suffix = "order.updated", f"{state}-{at}"
    return Normalized(
        events=[
            event(
                id=f"{SOURCE}:order-{oid}-{suffix}",
                source=SOURCE,
                type=kind,
                occurred_at=at,
                order=facts,
                data=data,
            )
        ]
    )


def _invoice(invoice: Mapping[str, Any]) -> Normalized:
    iid = need(invoice, "entity_id", "invoice")
    state = invoice.get("state")
    if state != _PAID:
        word = {1: "open (not paid yet)", 3: "cancelled"}.get(
            state if isinstance(state, int) else -1, repr(state)
        )
        return skip(f"invoice {iid} is {word}: no money was captured")
    order = _order_ref(invoice, "invoice")
    return Normalized(
        events=[
            event(
                id=f"{SOURCE}:invoice-{iid}",
                source=SOURCE,
                type="payment.captured",
                occurred_at=_when(invoice, "created_at"),
                order=order,
                data={
                    "amount": money(invoice.get("grand_total"), "invoice.grand_total"),
                    "currency": order["currency"],
                    "invoice_id": iid,
                    "invoice_number": text(invoice.get("increment_id")),
                    "transaction_id": text(invoice.get("transaction_id")),
                },
            )
        ]
    )


def _creditmemo(memo: Mapping[str, Any]) -> Normalized:
    mid = need(memo, "entity_id", "creditmemo")
    state = memo.get("state")
    if state != _REFUNDED:
        return skip(f"credit memo {mid} is in state {state!r}, not refunded: no money moved back")
    order = _order_ref(memo, "creditmemo")
    lines = [
        {"sku": ln["sku"], "qty": ln.get("qty")}
        for ln in _lines(as_list(memo.get("items") or [], "items"), "qty", priced=False)
    ]
    return Normalized(
        events=[
            event(
                id=f"{SOURCE}:creditmemo-{mid}",
                source=SOURCE,
                type="payment.refunded",
                occurred_at=_when(memo, "created_at"),
                order=order,
                data={
                    "amount": money(memo.get("grand_total"), "creditmemo.grand_total"),
                    "currency": order["currency"],
                    "refund_id": mid,
                    "creditmemo_number": text(memo.get("increment_id")),
                    "invoice_id": text(memo.get("invoice_id")),
                    "lines": [{k: v for k, v in ln.items() if v is not None} for ln in lines],
                },
            )
        ]
    )


def _shipment(shipment: Mapping[str, Any]) -> Normalized:
    sid = need(shipment, "entity_id", "shipment")
    tracks = [as_map(t, "tracks[]") for t in as_list(shipment.get("tracks") or [], "tracks")]
    numbers = [n for n in (text(t.get("track_number")) for t in tracks) if n]
    carrier = next(
        (text(t.get("carrier_code")) for t in tracks if text(t.get("carrier_code"))), None
    )
    return Normalized(
        events=[
            event(
                id=f"{SOURCE}:shipment-{sid}",
                source=SOURCE,
                type="fulfillment.shipped",
                occurred_at=_when(shipment, "created_at"),
                order={"ref": need(shipment, "order_id", "shipment"), "channel": SOURCE},
                data={
                    "tracking": clip(numbers[0]) if numbers else None,
                    "trackings": numbers if len(numbers) > 1 else None,
                    "carrier": carrier,
                    "shipment_id": sid,
                    "lines": _lines(
                        as_list(shipment.get("items") or [], "items"), "qty", priced=False
                    ),
                },
            )
        ]
    )
