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
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
from collections.abc import Iterator
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

__all__ = ["TEST_TOKEN", "RunningShopify", "ShopifyEmulator", "running_shopify_emulator"]

TEST_TOKEN = "shpat_emulator_0123456789abcdef"  # noqa: S105 - the emulator's own token
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
}
_HANDLERS = {
    "fulfillmentOrderHold": "hold",
    "fulfillmentOrderReleaseHold": "release_hold",
    "fulfillmentOrderSubmitCancellationRequest": "cancellation_request",
    "orderCancel": "order_cancel",
    "refundCreate": "refund_create",
    "orderUpdate": "order_update",
    "order": "order",
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


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _gid(kind: str, number: int | str) -> str:
    return f"gid://shopify/{kind}/{number}"


def _money(amount: Decimal, currency: str) -> dict[str, Any]:
    return {"shopMoney": {"amount": f"{amount:.2f}", "currencyCode": currency}}


@dataclass
class _FulfillmentOrder:
    id: str
    order_id: str
    status: str = "OPEN"
    request_status: str = "UNSUBMITTED"
    holds: list[dict[str, Any]] = field(default_factory=list)
    cancellation_messages: list[str] = field(default_factory=list)

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
    cancel_reason: str | None = None
    cancel_flags: dict[str, Any] = field(default_factory=dict)

    @property
    def refunded(self) -> Decimal:
        return sum(
            (Decimal(r["totalRefundedSet"]["shopMoney"]["amount"]) for r in self.refunds),
            Decimal(0),
        )


class ShopifyEmulator:
    """The shop's state and the ASGI app that answers for it."""

    def __init__(self, access_token: str = TEST_TOKEN) -> None:
        self.access_token = access_token
        self.throttled = False
        self.delay = 0.0
        self.requests: list[dict[str, Any]] = []  # every authenticated body, for assertions
        self.orders: dict[str, _Order] = {}
        self.fulfillment_orders: dict[str, _FulfillmentOrder] = {}
        self._failures: list[int] = []
        self._idempotent: dict[str, tuple[str, dict[str, Any]]] = {}
        self._ids = itertools.count(1_000_001)
        self._lock = threading.Lock()

    # -- setting the shop up ---------------------------------------------------------------------

    def add_order(
        self,
        *,
        paid: str = "100.00",
        currency: str = "USD",
        fulfillment_orders: int = 1,
        request_status: str = "UNSUBMITTED",
        gateway: str = "shopify_payments",
    ) -> str:
        """A paid order with its fulfillment orders; returns the order's numeric id.
        ``request_status="ACCEPTED"`` puts them at a fulfillment service that took them
        (``IN_PROGRESS``), where only a cancellation request can stop them."""
        with self._lock:
            number = next(self._ids)
            order_gid = _gid("Order", number)
            fos = []
            for _ in range(fulfillment_orders):
                fo = _FulfillmentOrder(_gid("FulfillmentOrder", next(self._ids)), order_gid)
                fo.request_status = request_status
                if request_status in ("ACCEPTED", "CANCELLATION_REQUESTED"):
                    fo.status = "IN_PROGRESS"
                self.fulfillment_orders[fo.id] = fo
                fos.append(fo.id)
            order = _Order(order_gid, f"#{number}", currency, Decimal(paid), gateway, fos)
            order.transactions.append(
                {
                    "id": _gid("OrderTransaction", next(self._ids)),
                    "kind": "SALE",
                    "status": "SUCCESS",
                    "gateway": gateway,
                    "amountSet": _money(Decimal(paid), currency),
                }
            )
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
            return str(number)

    def order(self, number: str) -> _Order:
        return self.orders[_gid("Order", number)]

    def fulfillment_orders_of(self, number: str) -> list[_FulfillmentOrder]:
        return [self.fulfillment_orders[i] for i in self.order(number).fulfillment_orders]

    def fail_next(self, status: int, times: int = 1) -> None:
        with self._lock:
            self._failures.extend([status] * times)

    def answer_cancellation(self, fo_id: str, *, accept: bool) -> None:
        """The fulfillment service's answer to a cancellation request (later a webhook)."""
        with self._lock:
            fo = self.fulfillment_orders[fo_id]
            if accept:
                fo.status, fo.request_status = "CANCELLED", "CANCELLATION_ACCEPTED"
            else:
                fo.request_status = "CANCELLATION_REJECTED"

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
        order.cancelled_at = _now()
        order.cancel_reason = str(args["reason"])
        order.cancel_flags = {
            k: args.get(k) for k in ("refund", "restock", "notifyCustomer", "staffNote")
        }
        for fo_id in order.fulfillment_orders:
            fo = self.fulfillment_orders[fo_id]
            if fo.status in ("OPEN", "ON_HOLD", "SCHEDULED"):
                fo.status, fo.holds = "CANCELLED", []
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
        for index, tx in enumerate(given.get("transactions") or []):
            where = ["transactions", str(index)]
            try:
                amount = Decimal(str(tx.get("amount")))
            except InvalidOperation:
                raise UserErrors(
                    root, [{"field": [*where, "amount"], "message": "Amount is invalid"}]
                ) from None
            parent = next((t for t in order.transactions if t["id"] == tx.get("parentId")), None)
            if parent is None or parent["kind"] not in ("SALE", "CAPTURE"):
                raise UserErrors(
                    root,
                    [{"field": [*where, "parentId"], "message": "Parent transaction is invalid"}],
                )
            if tx.get("kind") != "REFUND" or amount <= 0:
                raise UserErrors(
                    root, [{"field": [*where, "amount"], "message": "Amount must be positive"}]
                )
            total += amount
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
        refund = {
            "id": _gid("Refund", next(self._ids)),
            "note": given.get("note"),
            "createdAt": _now(),
            "totalRefundedSet": _money(total, order.currency),
        }
        order.refunds.append(refund)
        order.transactions.append(
            {
                "id": _gid("OrderTransaction", next(self._ids)),
                "kind": "REFUND",
                "status": "SUCCESS",
                "gateway": order.gateway,
                "amountSet": _money(total, order.currency),
            }
        )
        return {"refund": dict(refund), "order": {"id": order.id}, "userErrors": []}

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
        return {
            "order": {"id": order.id, "shippingAddress": dict(order.shipping_address)},
            "userErrors": [],
        }


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
    }
    return {**shapes.get(root, {}), "userErrors": []}


def _parse(document: str, variables: dict[str, Any]) -> tuple[str, dict[str, Any], str | None]:
    """The root field, its bound arguments and the ``@idempotent`` key, if any."""
    is_mutation = document.lstrip().startswith("mutation")
    for root in _ROOTS:
        if (root == "order") == is_mutation:
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
def running_shopify_emulator(access_token: str = TEST_TOKEN) -> Iterator[RunningShopify]:
    """The emulator served by uvicorn on a free loopback port, in a thread, while the block
    runs."""
    emulator = ShopifyEmulator(access_token)
    with serve_app(emulator.app(), "the Shopify emulator") as served:
        yield RunningShopify(emulator, served.base_url)
