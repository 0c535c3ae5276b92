"""A Shopify Admin GraphQL emulator for the Shopify connector's tests and local runs.

Only the operations the desk sends are emulated, picked by the root field named in the document
(no GraphQL engine): the ``order`` query (with its fulfillment orders, transactions and refunds),
``fulfillmentOrderHold``, ``fulfillmentOrderReleaseHold``,
``fulfillmentOrderSubmitCancellationRequest``, ``orderCancel``, ``refundCreate`` (with
``@idempotent(key:)``) and ``orderUpdate``. Arguments are bound from the document
(``name: $variable`` or a literal); required variables are validated and a missing one is the
top-level error Shopify gives. Refusals come back as ``userErrors`` with Shopify's shapes.

State is in memory: orders, fulfillment orders (``OPEN`` / ``ON_HOLD`` / ``IN_PROGRESS`` /
``CANCELLED`` / ``CLOSED`` with a request status), holds, cancellation requests, refunds (never
beyond what was paid). Auth is the ``X-Shopify-Access-Token`` header (401 otherwise).
``throttled = True`` answers ``THROTTLED`` as Shopify does (HTTP 200, ``errors`` and a drained
``throttleStatus``); ``fail_next(status)`` answers the next calls with that status; ``delay``
slows every answer (for timeouts).

Webhooks: every change of state queues the webhook Shopify sends for it in ``webhooks`` (a
``WebhookOutbox``; aim it with ``webhooks.aim(desk_url, merchant, secret)``). The body is the
Admin REST resource as Shopify's webhooks carry it (numeric ids, lower-case enums, amounts as
strings), snapshotted when the change happens; the headers are ``X-Shopify-Topic``,
``X-Shopify-Webhook-Id`` (the delivery id, the same on every retry), ``X-Shopify-Event-Id``,
``X-Shopify-Triggered-At`` (when the change happened, kept on retries as Shopify does),
``X-Shopify-Shop-Domain`` and ``X-Shopify-API-Version``; the HMAC is added when sent. Nothing is
sent while a request is served: ``deliver_due(now)`` sends what is due (tests call it). Topics:

- ``add_order``: ``orders/create``, then ``order_transactions/create`` for its sale;
- ``orderCancel``: ``orders/cancelled``; ``orderUpdate``: ``orders/updated``;
- ``refundCreate``: ``refunds/create``, then ``order_transactions/create`` for its refund
  transaction (the same transaction id, as Shopify sends both);
- ``fulfillmentOrderHold`` / ``place_hold``: ``fulfillment_orders/placed_on_hold`` (with
  ``created_fulfillment_hold``) and ``fulfillment_holds/added`` for every hold (Shopify sends the
  former only when the fulfillment order turns ``ON_HOLD``; the emulator sends it for a second
  hold too, so a desk subscribed to the fulfillment-order topics only still hears of it; both
  name the same hold id, the desk stores it once); ``fulfillmentOrderReleaseHold``:
  ``fulfillment_holds/released`` for every hold released, then
  ``fulfillment_orders/hold_released`` when the last one goes (its body names no hold), as
  Shopify documents both families;
- ``fulfillmentOrderSubmitCancellationRequest``:
  ``fulfillment_orders/cancellation_request_submitted``; ``answer_cancellation``:
  ``fulfillment_orders/cancellation_request_accepted`` or ``..._rejected`` (with ``message``);
- ``fail_payment``: ``order_transactions/create`` with a failed sale (``status: failure``);
- ``assess_risk`` / ``flag_high_risk``: ``orders/risk_assessment_changed`` with the
  OrderRiskAssessment (``risk_level``, provider, order ids; no recommendation).

``topics`` (a set of topic names) limits the webhooks queued to those, as a subscription list
does; ``None`` (the default) queues every topic.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from recoverydesk.sandbox.serving import serve_app
from recoverydesk.sandbox.shopify_order_edit import (
    EDIT_HANDLERS,
    EDIT_PAYLOADS,
    EDIT_REQUIRED,
    QUERIES,
    OrderEditing,
)
from recoverydesk.sandbox.webhook_outbox import DeliveryResult, WebhookOutbox

__all__ = [
    "RISK_TOPIC",
    "SHOP_DOMAIN",
    "TEST_TOKEN",
    "RunningShopify",
    "ShopifyEmulator",
    "running_shopify_emulator",
]

TEST_TOKEN = "shpat_emulator_0123456789abcdef"  # noqa: S105 - the emulator's own token
SHOP_DOMAIN = "recoverydesk-emulator.myshopify.com"
WEBHOOK_API_VERSION = "2026-01"
RISK_TOPIC = "orders/risk_assessment_changed"
_RISK_LEVELS = ("HIGH", "MEDIUM", "LOW", "NONE", "PENDING")
_SHOP_ID = 548380009
_LOCATION_ID = 24826418
_COUNTRIES = {"US": "United States", "CA": "Canada", "GB": "United Kingdom", "DE": "Germany"}
_HOLD_REASONS = (
    "AWAITING_PAYMENT",
    "HIGH_RISK_OF_FRAUD",
    "INCORRECT_ADDRESS",
    "INVENTORY_OUT_OF_STOCK",
    "UNKNOWN_DELIVERY_DATE",
    "ONLINE_STORE_POST_PURCHASE_CROSS_SELL",
    "AWAITING_RETURN_ITEMS",
    "OTHER",
)
_CANCEL_REASONS = ("CUSTOMER", "DECLINED", "FRAUD", "INVENTORY", "STAFF", "OTHER")
_ROOTS = (
    "fulfillmentOrderSubmitCancellationRequest",
    "fulfillmentOrderReleaseHold",
    "fulfillmentOrderHold",
    "orderCancel",
    "refundCreate",
    "orderUpdate",
    "order",
    *EDIT_HANDLERS,
)
# root field -> (argument, GraphQL type) that must be given and non-null
_REQUIRED: dict[str, tuple[tuple[str, str], ...]] = {
    "order": (("id", "ID!"),),
    "fulfillmentOrderHold": (("id", "ID!"), ("fulfillmentHold", "FulfillmentOrderHoldInput!")),
    "fulfillmentOrderReleaseHold": (("id", "ID!"),),
    "fulfillmentOrderSubmitCancellationRequest": (("id", "ID!"),),
    "orderCancel": (
        ("orderId", "ID!"),
        ("reason", "OrderCancelReason!"),
        ("restock", "Boolean!"),
    ),
    "refundCreate": (("input", "RefundInput!"),),
    "orderUpdate": (("input", "OrderInput!"),),
    **EDIT_REQUIRED,
}
_HANDLERS = {
    "fulfillmentOrderHold": "hold",
    "fulfillmentOrderReleaseHold": "release_hold",
    "fulfillmentOrderSubmitCancellationRequest": "cancellation_request",
    "orderCancel": "order_cancel",
    "refundCreate": "refund_create",
    "orderUpdate": "order_update",
    "order": "order",
    **EDIT_HANDLERS,
}
_LITERAL = r'\$\w+|"(?:[^"\\]|\\.)*"|true|false|null|-?\d+(?:\.\d+)?|[A-Z_][A-Z0-9_]*'
_ARG = re.compile(r"(\w+)\s*:\s*(" + _LITERAL + r")")
_IDEMPOTENT = re.compile(r"@idempotent\s*\(\s*key\s*:\s*(" + _LITERAL + r")\s*\)")
_ADDRESS = (
    "address1",
    "address2",
    "city",
    "company",
    "countryCode",
    "provinceCode",
    "zip",
    "firstName",
    "lastName",
    "phone",
)


class GraphQLProblem(Exception):
    """A top-level GraphQL error (HTTP 200 with ``errors``)."""

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message, self.extensions = message, extensions


class UserErrors(Exception):
    def __init__(self, root: str, errors: list[dict[str, Any]], name: str = "userErrors") -> None:
        super().__init__(root)
        self.root, self.errors, self.name = root, errors, name


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def _graphql_time(moment: datetime) -> str:
    """A GraphQL ``DateTime``: UTC with ``Z``."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _rest_time(moment: datetime) -> str:
    """A REST / webhook timestamp: whole seconds with the shop's offset (UTC here)."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def _gid(kind: str, number: int | str) -> str:
    return f"gid://shopify/{kind}/{number}"


def _number(gid: str) -> int:
    """The numeric id REST and webhooks use for ``gid://shopify/Kind/<number>``."""
    return int(gid.rsplit("/", 1)[1])


def _money(amount: Decimal, currency: str) -> dict[str, Any]:
    return {"shopMoney": {"amount": f"{amount:.2f}", "currencyCode": currency}}


def _rest_address(address: dict[str, Any]) -> dict[str, Any]:
    """The emulator's (GraphQL) mailing address as REST spells it."""
    first, last = address.get("firstName"), address.get("lastName")
    country = address.get("countryCodeV2")
    return {
        "first_name": first,
        "last_name": last,
        "name": " ".join(str(p) for p in (first, last) if p) or None,
        "company": address.get("company"),
        "address1": address.get("address1"),
        "address2": address.get("address2"),
        "city": address.get("city"),
        "zip": address.get("zip"),
        "province_code": address.get("provinceCode"),
        "country_code": country,
        "country": _COUNTRIES.get(str(country), country),
        "phone": address.get("phone"),
    }


def _rest_hold(hold: dict[str, Any]) -> dict[str, Any]:
    """A fulfillment hold as webhooks carry it (numeric id, lower-case reason)."""
    return {
        "id": _number(str(hold["id"])),
        "handle": hold.get("handle"),
        "reason": str(hold["reason"]).lower(),
        "reason_notes": hold.get("reasonNotes"),
        "held_by_requesting_app": True,
    }


@dataclass
class _FulfillmentOrder:
    id: str
    order_id: str
    status: str = "OPEN"
    request_status: str = "UNSUBMITTED"
    holds: list[dict[str, Any]] = field(default_factory=list)
    cancellation_messages: list[str] = field(default_factory=list)
    line_items: list[dict[str, Any]] = field(default_factory=list)  # REST fulfillment order lines
    created_at: datetime = field(default_factory=_wall_clock)
    updated_at: datetime = field(default_factory=_wall_clock)

    def node(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "requestStatus": self.request_status,
            "fulfillmentHolds": [dict(h) for h in self.holds],
        }


@dataclass
class _Order:
    id: str
    name: str
    currency: str
    paid: Decimal
    gateway: str
    fulfillment_orders: list[str]
    transactions: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    shipping_address: dict[str, Any] = field(default_factory=dict)
    cancelled_at: str | None = None
    closed_at: str | None = None  # archived
    cancel_reason: str | None = None
    cancel_flags: dict[str, Any] = field(default_factory=dict)
    email: str | None = None
    customer_id: int | None = None
    line_items: list[dict[str, Any]] = field(default_factory=list)  # REST line items
    refund_resources: list[dict[str, Any]] = field(default_factory=list)  # REST refunds
    risks: list[dict[str, Any]] = field(default_factory=list)  # risk assessments sent
    created_at: datetime = field(default_factory=_wall_clock)
    updated_at: datetime = field(default_factory=_wall_clock)

    @property
    def refunded(self) -> Decimal:
        return sum(
            (Decimal(r["totalRefundedSet"]["shopMoney"]["amount"]) for r in self.refunds),
            Decimal(0),
        )


class ShopifyEmulator(OrderEditing):
    """The shop's state, the ASGI app that answers for it, and the webhooks it sends (order
    editing: ``sandbox.shopify_order_edit``)."""

    def __init__(
        self,
        access_token: str = TEST_TOKEN,
        *,
        webhooks: WebhookOutbox | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.access_token = access_token
        self.throttled = False
        self.delay = 0.0
        self.requests: list[dict[str, Any]] = []  # every authenticated body, for assertions
        self.orders: dict[str, _Order] = {}
        self.fulfillment_orders: dict[str, _FulfillmentOrder] = {}
        self.shop_domain = SHOP_DOMAIN
        self.topics: set[str] | None = None  # the subscribed topics; None: every topic
        self._clock = clock or _wall_clock
        self.webhooks = (
            webhooks if webhooks is not None else WebhookOutbox("shopify", clock=self._clock)
        )
        self._failures: list[int] = []
        self._idempotent: dict[str, tuple[str, dict[str, Any]]] = {}
        self._ids = itertools.count(1_000_001)
        self._deliveries = itertools.count(1)
        # Delivery and event ids are UUID-shaped, sort in the order the changes happened (the
        # outbox sends equal due times in id order) and differ between emulator instances.
        self._salts = (uuid.uuid4().int >> 32, uuid.uuid4().int >> 32)
        self._lock = threading.Lock()
        self._start_editing()

    # -- setting the shop up ---------------------------------------------------------------------

    def add_order(
        self,
        *,
        paid: str = "100.00",
        currency: str = "USD",
        fulfillment_orders: int = 1,
        request_status: str = "UNSUBMITTED",
        gateway: str = "shopify_payments",
        lines: Sequence[tuple[str, int, str]] | None = None,
        email: str = "bob.norman@mail.example.com",
    ) -> str:
        """A paid order with its fulfillment orders; returns the order's numeric id.
        ``request_status="ACCEPTED"`` puts them at a fulfillment service that took them
        (``IN_PROGRESS``), where only a cancellation request can stop them. ``lines`` are
        ``(sku, quantity, unit price)``; by default one line per fulfillment order sharing
        ``paid``. The lines are dealt to the fulfillment orders in turn. Queues ``orders/create``
        and ``order_transactions/create`` (the sale)."""
        with self._lock:
            now = self._clock()
            number = next(self._ids)
            order_gid = _gid("Order", number)
            order = _Order(order_gid, f"#{number}", currency, Decimal(paid), gateway, [])
            order.email, order.customer_id = email, next(self._ids)
            order.created_at = order.updated_at = now
            for sku, quantity, price in lines or _default_lines(paid, fulfillment_orders):
                order.line_items.append(self._line_item(sku, quantity, Decimal(price)))
            for index in range(fulfillment_orders):
                fo = _FulfillmentOrder(_gid("FulfillmentOrder", next(self._ids)), order_gid)
                fo.request_status = request_status
                if request_status in ("ACCEPTED", "CANCELLATION_REQUESTED"):
                    fo.status = "IN_PROGRESS"
                fo.created_at = fo.updated_at = now
                dealt = order.line_items[index::fulfillment_orders]
                fo.line_items = [self._fo_line(fo, line) for line in dealt]
                self.fulfillment_orders[fo.id] = fo
                order.fulfillment_orders.append(fo.id)
            sale = {
                "id": _gid("OrderTransaction", next(self._ids)),
                "kind": "SALE",
                "status": "SUCCESS",
                "gateway": gateway,
                "amountSet": _money(Decimal(paid), currency),
            }
            order.transactions.append(sale)
            order.shipping_address = {
                "address1": "Chestnut Street 92",
                "address2": "",
                "city": "Louisville",
                "company": None,
                "countryCodeV2": "US",
                "provinceCode": "KY",
                "zip": "40202",
                "firstName": "Bob",
                "lastName": "Norman",
                "phone": "+1(502)-459-2181",
            }
            self.orders[order_gid] = order
            self._queue("orders/create", self._order_resource(order))
            self._queue("order_transactions/create", self._transaction_resource(order, sale, now))
            return str(number)

    def order(self, number: str) -> _Order:
        return self.orders[_gid("Order", number)]

    def fulfillment_orders_of(self, number: str) -> list[_FulfillmentOrder]:
        return [self.fulfillment_orders[i] for i in self.order(number).fulfillment_orders]

    def fail_next(self, status: int, times: int = 1) -> None:
        with self._lock:
            self._failures.extend([status] * times)

    def answer_cancellation(self, fo_id: str, *, accept: bool, message: str | None = None) -> None:
        """The fulfillment service's answer to a cancellation request, with its reason
        (``message``); queues ``fulfillment_orders/cancellation_request_accepted`` or
        ``..._rejected``."""
        with self._lock:
            fo = self.fulfillment_orders[fo_id]
            if accept:
                fo.status, fo.request_status = "CANCELLED", "CANCELLATION_ACCEPTED"
            else:
                fo.request_status = "CANCELLATION_REJECTED"
            fo.updated_at = self._clock()
            topic = "accepted" if accept else "rejected"
            self._queue(
                f"fulfillment_orders/cancellation_request_{topic}",
                {"fulfillment_order": self._fo_resource(fo), "message": message},
            )

    def place_hold(
        self, number: str, reason: str = "HIGH_RISK_OF_FRAUD", notes: str | None = None
    ) -> list[str]:
        """Hold every fulfillment order of the order that can be held, as the admin or a Shopify
        Flow "Hold fulfillment order" action does; returns the hold ids. Queues what
        ``fulfillmentOrderHold`` queues for each (see the module docstring)."""
        with self._lock:
            placed = []
            for fo_id in self.order(number).fulfillment_orders:
                if self.fulfillment_orders[fo_id].status in ("OPEN", "ON_HOLD", "SCHEDULED"):
                    hold = {"reason": reason, "reasonNotes": notes}
                    answer = self._op_hold({"id": fo_id, "fulfillmentHold": hold})
                    placed.append(str(answer["fulfillmentHold"]["id"]))
            return placed

    def assess_risk(
        self,
        number: str,
        risk_level: str,
        *,
        provider_id: int | None = None,
        provider_title: str | None = None,
    ) -> dict[str, Any]:
        """A risk assessment of the order (``HIGH`` / ``MEDIUM`` / ``LOW`` / ``NONE`` /
        ``PENDING``) by Shopify (no provider) or an app; returns the webhook body. Queues
        ``orders/risk_assessment_changed`` (``RISK_TOPIC``) with the OrderRiskAssessment as
        Shopify sends it: the level in lower case, the provider, the order's ids, no
        recommendation and no id of its own."""
        if risk_level.upper() not in _RISK_LEVELS:
            raise ValueError(f"risk_level must be one of {', '.join(_RISK_LEVELS)}")
        with self._lock:
            order = self.order(number)
            assessment = {
                "provider_id": provider_id,
                "provider_title": provider_title,
                "risk_level": risk_level.lower(),
                "created_at": _rest_time(self._clock()),
                "order_id": _number(order.id),
                "admin_graphql_api_order_id": order.id,
            }
            order.risks.append(assessment)
            self._queue(RISK_TOPIC, dict(assessment))
            return dict(assessment)

    def flag_high_risk(
        self, number: str, *, provider_id: int | None = None, provider_title: str | None = None
    ) -> dict[str, Any]:
        """Shopify's fraud analysis (or the app named) rates the order ``HIGH`` risk."""
        return self.assess_risk(
            number, "HIGH", provider_id=provider_id, provider_title=provider_title
        )

    def fail_payment(
        self,
        number: str,
        *,
        amount: str | None = None,
        message: str = "Your card was declined.",
        error_code: str = "card_declined",
    ) -> str:
        """A charge on the order fails (a retried or extra sale); returns the transaction's
        numeric id. Queues ``order_transactions/create`` with ``status: failure``."""
        with self._lock:
            order = self.order(number)
            now = self._clock()
            failed: dict[str, Any] = {
                "id": _gid("OrderTransaction", next(self._ids)),
                "kind": "SALE",
                "status": "FAILURE",
                "gateway": order.gateway,
                "amountSet": _money(Decimal(amount or order.paid), order.currency),
            }
            order.transactions.append(failed)
            resource = self._transaction_resource(order, failed, now)
            resource.update(message=message, error_code=error_code)
            self._queue("order_transactions/create", resource)
            return str(_number(failed["id"]))

    # -- webhooks ----------------------------------------------------------------------------------

    def deliver_due(self, now: datetime | None = None) -> list[DeliveryResult]:
        """Send every webhook due by ``now`` (the clock's now by default) to the desk the outbox
        is aimed at; what the desk does not take stays and is sent again next time."""
        return self.webhooks.deliver_due(now or self._clock())

    def _queue(self, topic: str, body: dict[str, Any]) -> None:
        """Queue a webhook (called with the lock held, when the change is made)."""
        if self.topics is not None and topic not in self.topics:
            return
        sequence = next(self._deliveries)
        delivery = str(uuid.UUID(int=(sequence << 96) | self._salts[0]))
        event = str(uuid.UUID(int=(sequence << 96) | self._salts[1]))
        now = self._clock()
        headers = {
            "X-Shopify-Topic": topic,
            "X-Shopify-Webhook-Id": delivery,
            "X-Shopify-Event-Id": event,
            "X-Shopify-Triggered-At": _graphql_time(now),
            "X-Shopify-Shop-Domain": self.shop_domain,
            "X-Shopify-API-Version": WEBHOOK_API_VERSION,
        }
        self.webhooks.put(delivery, topic, body, due_at=now, headers=headers)

    def _line_item(self, sku: str, quantity: int, price: Decimal) -> dict[str, Any]:
        line_id = next(self._ids)
        variant = self._variant_for(sku, price)
        return {
            "id": line_id,
            "admin_graphql_api_id": _gid("LineItem", line_id),
            "variant_id": _number(variant["id"]),
            "product_id": variant["product_id"],
            "sku": sku,
            "title": sku,
            "name": sku,
            "variant_title": None,
            "vendor": None,
            "quantity": quantity,
            "current_quantity": quantity,
            "fulfillable_quantity": quantity,
            "price": f"{price:.2f}",
            "total_discount": "0.00",
            "fulfillment_service": "manual",
            "fulfillment_status": None,
            "requires_shipping": True,
            "taxable": True,
            "gift_card": False,
            "grams": 0,
            "properties": [],
            "product_exists": True,
            "tax_lines": [],
        }

    def _fo_line(self, fo: _FulfillmentOrder, line: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": next(self._ids),
            "shop_id": _SHOP_ID,
            "fulfillment_order_id": _number(fo.id),
            "quantity": line["quantity"],
            "line_item_id": line["id"],
            "inventory_item_id": line["variant_id"],
            "fulfillable_quantity": line["quantity"],
            "variant_id": line["variant_id"],
        }

    def _order_resource(self, order: _Order) -> dict[str, Any]:
        """The order as ``orders/*`` webhooks carry it (the REST Order resource)."""
        number = _number(order.id)
        subtotal = sum(
            (Decimal(li["price"]) * li["quantity"] for li in order.line_items), Decimal(0)
        )
        address = _rest_address(order.shipping_address)
        cancelled = (
            _rest_time(datetime.fromisoformat(order.cancelled_at)) if order.cancelled_at else None
        )
        return {
            "id": number,
            "admin_graphql_api_id": order.id,
            "name": order.name,
            "order_number": number,
            "number": number - 1000,
            "email": order.email,
            "contact_email": order.email,
            "created_at": _rest_time(order.created_at),
            "updated_at": _rest_time(order.updated_at),
            "processed_at": _rest_time(order.created_at),
            "cancelled_at": cancelled,
            "cancel_reason": order.cancel_reason.lower() if order.cancel_reason else None,
            "closed_at": None,
            "confirmed": True,
            "test": False,
            "currency": order.currency,
            "presentment_currency": order.currency,
            "financial_status": _financial_status(order),
            "fulfillment_status": None,
            "payment_gateway_names": [order.gateway],
            "subtotal_price": f"{subtotal:.2f}",
            "total_line_items_price": f"{subtotal:.2f}",
            "total_price": f"{order.paid:.2f}",
            "total_tax": "0.00",
            "total_discounts": "0.00",
            "taxes_included": False,
            "source_name": "web",
            "tags": "",
            "note": None,
            "customer": {
                "id": order.customer_id,
                "email": order.email,
                "first_name": order.shipping_address.get("firstName"),
                "last_name": order.shipping_address.get("lastName"),
                "state": "disabled",
                "verified_email": True,
                "currency": order.currency,
            },
            "line_items": [dict(li) for li in order.line_items],
            "shipping_address": address,
            "billing_address": dict(address),
            "shipping_lines": [],
            "refunds": [dict(r) for r in order.refund_resources],
            "fulfillments": [],
        }

    def _transaction_resource(
        self, order: _Order, tx: dict[str, Any], at: datetime, parent: str | None = None
    ) -> dict[str, Any]:
        """An order transaction as ``order_transactions/create`` and refunds carry it."""
        number = _number(tx["id"])
        return {
            "id": number,
            "admin_graphql_api_id": tx["id"],
            "order_id": _number(order.id),
            "kind": str(tx["kind"]).lower(),
            "status": str(tx["status"]).lower(),
            "amount": tx["amountSet"]["shopMoney"]["amount"],
            "currency": order.currency,
            "gateway": tx["gateway"],
            "parent_id": _number(parent) if parent else None,
            "message": None,
            "error_code": None,
            "authorization": None,
            "created_at": _rest_time(at),
            "processed_at": _rest_time(at),
            "test": False,
            "source_name": "web",
            "receipt": {},
            "location_id": None,
            "user_id": None,
            "device_id": None,
            "payment_id": f"{order.name}.{len(order.transactions)}",
        }

    def _fo_resource(self, fo: _FulfillmentOrder) -> dict[str, Any]:
        """A fulfillment order as ``fulfillment_orders/*`` webhooks carry it (REST shape)."""
        order = self.orders[fo.order_id]
        destination = _rest_address(order.shipping_address)
        destination.pop("name")
        destination.pop("country_code")
        destination.pop("province_code")
        return {
            "id": _number(fo.id),
            "admin_graphql_api_id": fo.id,
            "shop_id": _SHOP_ID,
            "order_id": _number(order.id),
            "assigned_location_id": _LOCATION_ID,
            "request_status": fo.request_status.lower(),
            "status": fo.status.lower(),
            "fulfill_at": None,
            "fulfill_by": None,
            "created_at": _rest_time(fo.created_at),
            "updated_at": _rest_time(fo.updated_at),
            "destination": {"email": order.email, **destination},
            "line_items": [dict(li) for li in fo.line_items],
            "international_duties": None,
            "fulfillment_holds": [_rest_hold(h) for h in fo.holds],
            "delivery_method": None,
            "assigned_location": {"location_id": _LOCATION_ID, "name": "Emulated warehouse"},
            "merchant_requests": [
                {
                    "message": message,
                    "request_options": {"notify_customer": False},
                    "kind": "cancellation_request",
                }
                for message in fo.cancellation_messages
            ],
        }

    # -- HTTP ------------------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(
            routes=[Route("/admin/api/{version}/graphql.json", self._endpoint, methods=["POST"])]
        )

    async def _endpoint(self, request: Request) -> JSONResponse:  # noqa: PLR0911 - one answer per case
        if self.delay:
            await asyncio.sleep(self.delay)  # a slow shop
        if request.headers.get("x-shopify-access-token") != self.access_token:
            return JSONResponse(
                {
                    "errors": "[API] Invalid API key or access token "
                    "(unrecognized login or wrong password)"
                },
                401,
            )
        with self._lock:
            if self._failures:
                status = self._failures.pop(0)
                return JSONResponse({"errors": "Internal error (emulated)"}, status)
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return JSONResponse({"errors": {"query": "Required parameter missing or invalid"}}, 400)
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return JSONResponse({"errors": {"query": "Required parameter missing or invalid"}}, 400)
        self.requests.append(body)
        if self.throttled:
            return JSONResponse(
                {
                    "errors": [
                        {
                            "message": "Throttled",
                            "extensions": {
                                "code": "THROTTLED",
                                "documentation": "https://shopify.dev/api/usage/rate-limits",
                            },
                        }
                    ],
                    "extensions": _cost(requested=52, actual=None, available=0),
                }
            )
        variables = body.get("variables") or {}
        try:
            if not isinstance(variables, dict):
                raise GraphQLProblem("Variables must be an object")
            with self._lock:
                root, data = self._execute(body["query"], variables)
        except GraphQLProblem as problem:
            error: dict[str, Any] = {
                "message": problem.message,
                "locations": [{"line": 1, "column": 1}],
            }
            if problem.extensions:
                error["extensions"] = problem.extensions
            return JSONResponse({"errors": [error], "extensions": _cost(10, None, 1990)})
        except UserErrors as refused:
            payload = _empty_payload(refused.root)
            payload[refused.name] = refused.errors
            if refused.name != "userErrors":
                payload["userErrors"] = [
                    {"field": e.get("field"), "message": e["message"]} for e in refused.errors
                ]
            root, data = refused.root, payload
        return JSONResponse({"data": {root: data}, "extensions": _cost(10, 10, 1990)})

    # -- GraphQL, as far as the desk needs it -------------------------------------------------

    def _execute(self, document: str, variables: dict[str, Any]) -> tuple[str, Any]:
        root, args, key = _parse(document, variables)
        for name, kind in _REQUIRED[root]:
            if args.get(name) is None:
                raise GraphQLProblem(
                    f"Variable ${name} of type {kind} was provided invalid value",
                    value=None,
                    problems=[{"path": [], "explanation": "Expected value to not be null"}],
                )
        handler = getattr(self, f"_op_{_HANDLERS[root]}")
        if key is not None:
            return root, self._idempotently(root, key, args, handler)
        return root, handler(args)

    def _idempotently(self, root: str, key: str, args: dict[str, Any], handler: Any) -> Any:
        fingerprint = json.dumps(args, sort_keys=True, default=str)
        seen = self._idempotent.get(key)
        if seen is not None:
            if seen[0] != fingerprint:
                raise GraphQLProblem(
                    "The idempotency key was already used with different parameters.",
                    code="IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                )
            return seen[1]
        result = handler(args)  # a UserErrors refusal is not remembered: a retry may succeed
        self._idempotent[key] = (fingerprint, result)
        return result

    def _order_of(self, gid: Any) -> _Order | None:
        return self.orders.get(str(gid))

    def _fo(self, root: str, gid: Any) -> _FulfillmentOrder:
        fo = self.fulfillment_orders.get(str(gid))
        if fo is None:
            raise UserErrors(
                root,
                [
                    {
                        "field": ["id"],
                        "message": "Fulfillment order does not exist.",
                        "code": "FULFILLMENT_ORDER_NOT_FOUND",
                    }
                ],
            )
        return fo

    def _op_order(self, args: dict[str, Any]) -> dict[str, Any] | None:
        order = self._order_of(args["id"])
        if order is None:
            return None
        return {
            "id": order.id,
            "name": order.name,
            "cancelledAt": order.cancelled_at,
            "cancelReason": order.cancel_reason,
            "currencyCode": order.currency,
            "fulfillmentOrders": {
                "nodes": [self.fulfillment_orders[i].node() for i in order.fulfillment_orders]
            },
            "transactions": [dict(t) for t in order.transactions],
            "refunds": [dict(r) for r in order.refunds],
            "shippingAddress": dict(order.shipping_address),
            **self._order_lines(order),
        }

    def _op_hold(self, args: dict[str, Any]) -> dict[str, Any]:
        root = "fulfillmentOrderHold"
        hold = args["fulfillmentHold"]
        if not isinstance(hold, dict) or hold.get("reason") is None:
            raise GraphQLProblem(
                "Variable $fulfillmentHold of type FulfillmentOrderHoldInput! was provided "
                "invalid value for reason (Expected value to not be null)"
            )
        if hold["reason"] not in _HOLD_REASONS:
            raise GraphQLProblem(
                "Variable $fulfillmentHold of type FulfillmentOrderHoldInput! was provided "
                f'invalid value for reason (Expected "{hold["reason"]}" to be one of: '
                f"{', '.join(_HOLD_REASONS)})"
            )
        fo = self._fo(root, args["id"])
        if fo.status not in ("OPEN", "ON_HOLD", "SCHEDULED"):
            raise UserErrors(
                root,
                [
                    {
                        "field": ["id"],
                        "message": "The fulfillment order cannot be put on hold "
                        f"because its status is {fo.status.lower()}.",
                        "code": "INVALID_FULFILLMENT_ORDER_STATUS",
                    }
                ],
            )
        handle = hold.get("handle")
        if handle is not None and len(str(handle)) > 64:
            raise UserErrors(
                root,
                [
                    {
                        "field": ["fulfillmentHold", "handle"],
                        "message": "Handle is too long (maximum is 64 characters)",
                        "code": "TOO_LONG",
                    }
                ],
            )
        if handle and any(h.get("handle") == handle for h in fo.holds):
            raise UserErrors(
                root,
                [
                    {
                        "field": ["fulfillmentHold", "handle"],
                        "message": "The handle provided for the fulfillment hold is already "
                        "in use by this app for another hold on this fulfillment order.",
                        "code": "DUPLICATED_FULFILLMENT_HOLD_HANDLE",
                    }
                ],
            )
        placed = {
            "id": _gid("FulfillmentHold", next(self._ids)),
            "handle": handle,
            "reason": hold["reason"],
            "reasonNotes": hold.get("reasonNotes"),
        }
        fo.holds.append(placed)
        fo.status = "ON_HOLD"
        fo.updated_at = self._clock()
        # Shopify sends placed_on_hold only when the fulfillment order turns ON_HOLD; it is kept
        # for every hold here (see the module docstring)
        self._queue(
            "fulfillment_orders/placed_on_hold",
            {
                "fulfillment_order": self._fo_resource(fo),
                "remaining_fulfillment_order": None,
                "held_fulfillment_order_line_items": [
                    {"id": li["id"], "quantity": li["quantity"]} for li in fo.line_items
                ],
                "created_fulfillment_hold": _rest_hold(placed),
            },
        )
        self._queue(  # Shopify: for every hold added
            "fulfillment_holds/added",
            {"fulfillment_hold": _rest_hold(placed), "fulfillment_order": self._fo_resource(fo)},
        )
        return {
            "fulfillmentHold": dict(placed),
            "fulfillmentOrder": {"id": fo.id, "status": fo.status},
            "remainingFulfillmentOrder": None,
            "userErrors": [],
        }

    def _op_release_hold(self, args: dict[str, Any]) -> dict[str, Any]:
        root = "fulfillmentOrderReleaseHold"
        fo = self._fo(root, args["id"])
        if fo.status != "ON_HOLD":
            raise UserErrors(
                root,
                [
                    {
                        "field": ["id"],
                        "message": "The fulfillment order is not in a releasable state.",
                        "code": "INVALID_FULFILLMENT_ORDER_STATUS",
                    }
                ],
            )
        wanted = args.get("holdIds")
        released = [h for h in fo.holds if wanted is None or h["id"] in wanted]
        if wanted is None:
            fo.holds.clear()
        else:
            known = {h["id"] for h in fo.holds}
            unknown = [i for i in wanted if i not in known]
            if unknown:
                raise UserErrors(
                    root,
                    [
                        {
                            "field": ["holdIds"],
                            "message": f"Invalid fulfillment hold ids: {', '.join(unknown)}.",
                            "code": "INVALID_FULFILLMENT_HOLD_IDS",
                        }
                    ],
                )
            fo.holds[:] = [h for h in fo.holds if h["id"] not in wanted]
        if not fo.holds:
            fo.status = "OPEN"
        fo.updated_at = self._clock()
        for hold in released:  # Shopify: for every hold released
            self._queue(
                "fulfillment_holds/released",
                {"fulfillment_hold": _rest_hold(hold), "fulfillment_order": self._fo_resource(fo)},
            )
        if not fo.holds:  # Shopify: only when the last hold goes (no hold named in the body)
            self._queue(
                "fulfillment_orders/hold_released", {"fulfillment_order": self._fo_resource(fo)}
            )
        return {"fulfillmentOrder": {"id": fo.id, "status": fo.status}, "userErrors": []}

    def _op_cancellation_request(self, args: dict[str, Any]) -> dict[str, Any]:
        root = "fulfillmentOrderSubmitCancellationRequest"
        fo = self._fo(root, args["id"])
        if fo.request_status != "ACCEPTED":
            raise UserErrors(
                root,
                [
                    {
                        "field": ["id"],
                        "message": "Cannot request cancellation for a fulfillment order whose "
                        "fulfillment request has not been accepted "
                        f"(request status: {fo.request_status.lower()}).",
                    }
                ],
            )
        fo.request_status = "CANCELLATION_REQUESTED"
        fo.cancellation_messages.append(str(args.get("message") or ""))
        now = self._clock()
        fo.updated_at = now
        self._queue(
            "fulfillment_orders/cancellation_request_submitted",
            {
                "fulfillment_order": self._fo_resource(fo),
                "fulfillment_order_merchant_request": {
                    "id": next(self._ids),
                    "message": fo.cancellation_messages[-1] or None,
                    "kind": "cancellation_request",
                    "request_options": {"notify_customer": False},
                    "sent_at": _rest_time(now),
                },
            },
        )
        return {
            "fulfillmentOrder": {
                "id": fo.id,
                "status": fo.status,
                "requestStatus": fo.request_status,
            },
            "userErrors": [],
        }

    def _op_order_cancel(self, args: dict[str, Any]) -> dict[str, Any]:
        root = "orderCancel"
        if args["reason"] not in _CANCEL_REASONS:
            raise GraphQLProblem(
                f"Variable $reason of type OrderCancelReason! was provided invalid value "
                f'(Expected "{args["reason"]}" to be one of: {", ".join(_CANCEL_REASONS)})'
            )
        if args.get("refund") is None and args.get("refundMethod") is None:
            raise GraphQLProblem("Either refund or refundMethod must be provided")
        order = self._order_of(args["orderId"])
        if order is None:
            raise UserErrors(
                root,
                [{"field": ["orderId"], "message": "Order does not exist", "code": "NOT_FOUND"}],
                "orderCancelUserErrors",
            )
        if order.cancelled_at is not None:
            raise UserErrors(
                root,
                [
                    {
                        "field": ["orderId"],
                        "message": "Cannot cancel an order that has already been cancelled",
                        "code": "INVALID",
                    }
                ],
                "orderCancelUserErrors",
            )
        now = self._clock()
        order.cancelled_at = _graphql_time(now)
        order.updated_at = now
        order.cancel_reason = str(args["reason"])
        order.cancel_flags = {
            k: args.get(k) for k in ("refund", "restock", "notifyCustomer", "staffNote")
        }
        for fo_id in order.fulfillment_orders:
            fo = self.fulfillment_orders[fo_id]
            if fo.status in ("OPEN", "ON_HOLD", "SCHEDULED"):
                fo.status, fo.holds = "CANCELLED", []
                fo.updated_at = now
        self._queue("orders/cancelled", self._order_resource(order))
        return {
            "job": {"id": _gid("Job", next(self._ids)), "done": True},
            "orderCancelUserErrors": [],
            "userErrors": [],
        }

    def _op_refund_create(self, args: dict[str, Any]) -> dict[str, Any]:
        root = "refundCreate"
        given = args["input"]
        if not isinstance(given, dict) or not given.get("orderId"):
            raise GraphQLProblem(
                "Variable $input of type RefundInput! was provided invalid value for orderId "
                "(Expected value to not be null)"
            )
        order = self._order_of(given["orderId"])
        if order is None:
            raise UserErrors(root, [{"field": ["orderId"], "message": "Order does not exist"}])
        total = Decimal(0)
        parents: list[str] = []
        for index, tx in enumerate(given.get("transactions") or []):
            where = ["transactions", str(index)]
            try:
                amount = Decimal(str(tx.get("amount")))
            except InvalidOperation:
                raise UserErrors(
                    root, [{"field": [*where, "amount"], "message": "Amount is invalid"}]
                ) from None
            parent = next((t for t in order.transactions if t["id"] == tx.get("parentId")), None)
            if (
                parent is None
                or parent["kind"] not in ("SALE", "CAPTURE")
                or parent["status"] != "SUCCESS"
            ):
                raise UserErrors(
                    root,
                    [{"field": [*where, "parentId"], "message": "Parent transaction is invalid"}],
                )
            if tx.get("kind") != "REFUND" or amount <= 0:
                raise UserErrors(
                    root, [{"field": [*where, "amount"], "message": "Amount must be positive"}]
                )
            total += amount
            parents.append(str(parent["id"]))
        left = order.paid - order.refunded
        if total > left:
            raise UserErrors(
                root,
                [
                    {
                        "field": ["transactions"],
                        "message": f"Refund amount ${total:.2f} is greater than net payment "
                        f"received ${left:.2f}",
                    }
                ],
            )
        now = self._clock()
        refund = {
            "id": _gid("Refund", next(self._ids)),
            "note": given.get("note"),
            "createdAt": _graphql_time(now),
            "totalRefundedSet": _money(total, order.currency),
        }
        order.refunds.append(refund)
        transaction = {
            "id": _gid("OrderTransaction", next(self._ids)),
            "kind": "REFUND",
            "status": "SUCCESS",
            "gateway": order.gateway,
            "amountSet": _money(total, order.currency),
        }
        order.transactions.append(transaction)
        order.updated_at = now
        self._queue_refund(order, refund, transaction, given, parents[0] if parents else None)
        return {"refund": dict(refund), "order": {"id": order.id}, "userErrors": []}

    def _queue_refund(
        self,
        order: _Order,
        refund: dict[str, Any],
        transaction: dict[str, Any],
        given: dict[str, Any],
        parent: str | None,
    ) -> None:
        """``refunds/create`` (the REST Refund), then ``order_transactions/create`` for its
        transaction: Shopify sends both, with the same transaction id."""
        now = self._clock()
        moved = Decimal(transaction["amountSet"]["shopMoney"]["amount"]) > 0
        tx = self._transaction_resource(order, transaction, now, parent) if moved else None
        lines = {li["admin_graphql_api_id"]: li for li in order.line_items}
        refund_lines = []
        for item in given.get("refundLineItems") or []:
            if not isinstance(item, dict) or str(item.get("lineItemId")) not in lines:
                continue
            line = lines[str(item.get("lineItemId"))]
            refund_lines.append(
                {
                    "id": next(self._ids),
                    "line_item_id": line["id"],
                    "quantity": int(item.get("quantity") or 0),
                    "restock_type": str(item.get("restockType") or "NO_RESTOCK").lower(),
                    "location_id": None,
                    "line_item": dict(line),
                }
            )
        resource = {
            "id": _number(str(refund["id"])),
            "admin_graphql_api_id": refund["id"],
            "order_id": _number(order.id),
            "created_at": _rest_time(now),
            "processed_at": _rest_time(now),
            "note": refund.get("note"),
            "restock": any(line["restock_type"] != "no_restock" for line in refund_lines),
            "user_id": None,
            "refund_line_items": refund_lines,
            "transactions": [tx] if tx else [],
            "order_adjustments": [],
            "duties": [],
        }
        order.refund_resources.append(resource)
        self._queue("refunds/create", resource)
        if tx is not None:
            self._queue("order_transactions/create", dict(tx))

    def _op_order_update(self, args: dict[str, Any]) -> dict[str, Any]:
        root = "orderUpdate"
        given = args["input"]
        if not isinstance(given, dict) or not given.get("id"):
            raise GraphQLProblem(
                "Variable $input of type OrderInput! was provided invalid value for id "
                "(Expected value to not be null)"
            )
        order = self._order_of(given["id"])
        if order is None:
            raise UserErrors(root, [{"field": ["id"], "message": "Order does not exist"}])
        address = given.get("shippingAddress")
        if isinstance(address, dict):
            unknown = sorted(set(address) - set(_ADDRESS))
            if unknown:
                raise GraphQLProblem(
                    "Variable $input of type OrderInput! was provided invalid value for "
                    f"shippingAddress.{unknown[0]} (Field is not defined on MailingAddressInput)"
                )
            country = address.get("countryCode")
            if country is not None and not re.fullmatch(r"[A-Z]{2}", str(country)):
                raise UserErrors(
                    root,
                    [
                        {
                            "field": ["shippingAddress", "countryCode"],
                            "message": "Shipping address country is not supported",
                        }
                    ],
                )
            for name, value in address.items():
                order.shipping_address["countryCodeV2" if name == "countryCode" else name] = value
        order.updated_at = self._clock()
        self._queue("orders/updated", self._order_resource(order))
        return {
            "order": {"id": order.id, "shippingAddress": dict(order.shipping_address)},
            "userErrors": [],
        }


def _default_lines(paid: str, count: int) -> list[tuple[str, int, str]]:
    """One line per fulfillment order (at least one), sharing ``paid`` to the cent."""
    count = max(count, 1)
    total = Decimal(paid)
    share = (total / count).quantize(Decimal("0.01"))
    prices = [share] * (count - 1) + [total - share * (count - 1)]
    return [(f"EMU-SKU-{index + 1}", 1, f"{price:.2f}") for index, price in enumerate(prices)]


def _financial_status(order: _Order) -> str:
    refunded = order.refunded
    if refunded > 0 and refunded >= order.paid:
        return "refunded"
    return "partially_refunded" if refunded > 0 else "paid"


def _cost(requested: int, actual: int | None, available: int) -> dict[str, Any]:
    return {
        "cost": {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": {
                "maximumAvailable": 2000.0,
                "currentlyAvailable": available,
                "restoreRate": 100.0,
            },
        }
    }


def _empty_payload(root: str) -> dict[str, Any]:
    shapes: dict[str, dict[str, Any]] = {
        "fulfillmentOrderHold": {
            "fulfillmentHold": None,
            "fulfillmentOrder": None,
            "remainingFulfillmentOrder": None,
        },
        "fulfillmentOrderReleaseHold": {"fulfillmentOrder": None},
        "fulfillmentOrderSubmitCancellationRequest": {"fulfillmentOrder": None},
        "orderCancel": {"job": None, "orderCancelUserErrors": []},
        "refundCreate": {"refund": None, "order": None},
        "orderUpdate": {"order": None},
        **EDIT_PAYLOADS,
    }
    return {**shapes.get(root, {}), "userErrors": []}


def _parse(document: str, variables: dict[str, Any]) -> tuple[str, dict[str, Any], str | None]:
    """The root field, its bound arguments and the ``@idempotent`` key, if any."""
    is_mutation = document.lstrip().startswith("mutation")
    for root in _ROOTS:
        if (root in QUERIES) == is_mutation:
            continue
        match = re.search(r"(?<![A-Za-z0-9_])" + root + r"\s*\(", document)
        if match is None:
            continue
        start = match.end()
        depth, end = 1, start
        while end < len(document) and depth:
            depth += {"(": 1, ")": -1}.get(document[end], 0)
            end += 1
        args = {
            name: _value(raw, variables) for name, raw in _ARG.findall(document[start : end - 1])
        }
        directive = _IDEMPOTENT.match(
            document, end + len(document[end:]) - len(document[end:].lstrip())
        )
        key = _value(directive.group(1), variables) if directive else None
        if directive and not key:
            raise GraphQLProblem("The idempotency key must not be blank")
        return root, args, None if key is None else str(key)
    raise GraphQLProblem(
        "The emulator answers only: " + ", ".join(_ROOTS), code="UNSUPPORTED_BY_EMULATOR"
    )


def _value(raw: str, variables: dict[str, Any]) -> Any:
    if raw.startswith("$"):
        return variables.get(raw[1:])
    if raw.startswith('"'):
        return json.loads(raw)
    if raw in ("true", "false"):
        return raw == "true"
    if raw == "null":
        return None
    if re.fullmatch(r"-?\d+(?:\.\d+)?", raw):
        return Decimal(raw)
    return raw  # an enum value


# -- serving it -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunningShopify:
    emulator: ShopifyEmulator
    base_url: str


@contextmanager
def running_shopify_emulator(
    access_token: str = TEST_TOKEN,
    *,
    webhooks: WebhookOutbox | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Iterator[RunningShopify]:
    """The emulator served by uvicorn on a free loopback port, in a thread, while the block
    runs. Its webhooks wait in ``emulator.webhooks`` until aimed at a desk and delivered."""
    emulator = ShopifyEmulator(access_token, webhooks=webhooks, clock=clock)
    with serve_app(emulator.app(), "the Shopify emulator") as served:
        yield RunningShopify(emulator, served.base_url)
