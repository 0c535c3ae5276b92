"""The Shopify Admin connector (``kind: shopify_admin``): the desk's commands as Admin GraphQL.

The merchant's connection gives ``base_url`` (the shop's admin URL, ``https://shop.myshopify.com``),
``api_key`` (the Admin API access token, sent as ``X-Shopify-Access-Token``), and optionally
``api_version`` (default ``2026-01``) and ``timeout_seconds``. Every call is a POST to
``{base_url}/admin/api/{version}/graphql.json``. The order is ``order_ids["shopify_order_id"]``
(else the order's ref, which is the Shopify order id: see ``normalize.shopify``).

Actions:

* ``wms_hold`` (``reason``: a ``FulfillmentHoldReason`` or free text, ``notes``): the order's
  fulfillment orders are read first; each one still ``OPEN`` (or ``ON_HOLD`` by someone else) gets
  ``fulfillmentOrderHold`` with a hold ``handle`` derived from the desk's key, so a repeat finds
  its own hold and sends nothing.
* ``release_hold`` (``hold_key``: the key of the hold command to release; default every hold the
  desk placed; ``hold_type``: also every hold of that type — fraud, address, inventory, payment —
  whoever placed it): ``fulfillmentOrderReleaseHold`` with those hold ids only (other holds
  stay). Nothing left to release is a harmless repeat.
* ``wms_cancel`` (``message``): ``fulfillmentOrderSubmitCancellationRequest`` on each fulfillment
  order the fulfillment service accepted; the 3PL's acknowledgment comes later as a webhook.
  One already ``CANCELLATION_REQUESTED`` (or cancelled/closed) is not asked again.
* ``order_cancel`` (``reason``: an ``OrderCancelReason``, default ``OTHER``; ``staff_note``):
  ``orderCancel`` with ``refund: false, restock: true, notifyCustomer: false`` (money goes back
  through the payment commands); an order already cancelled is a harmless repeat.
* ``refund`` (``amount`` in major units, ``currency``): ``refundCreate`` against the order's
  successful sale/capture transaction, with the desk's key in the refund's note and, from API
  ``2026-01``, as ``@idempotent(key:)``. A refund whose note carries the key already is the answer.
* ``address_update`` (``address`` or flat fields, snake_case or camelCase): ``orderUpdate`` with
  the new ``shippingAddress`` (naturally idempotent).
* ``line_swap`` (``sku``, ``substitute``, ``qty``): an order edit swapping the line for the
  substitute's variant, made safe to retry by reading the order first
  (``connectors.shopify_order_edit``).

Errors: timeouts, transport errors, 429, 5xx, garbled answers and ``THROTTLED`` (read from
``extensions.cost.throttleStatus`` too) raise ``OutsideUnavailable``; 401/403/404, other top-level
``errors`` and ``userErrors`` are refusals carrying Shopify's message. The token is never logged.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from recoverydesk.connectors.http import SharedClient
from recoverydesk.connectors.shopify_order_edit import line_swap
from recoverydesk.services.ports import OutsideAnswer, OutsideCommand, OutsideUnavailable

__all__ = ["DEFAULT_VERSION", "HOLD_PREFIX", "ShopifyAdmin", "hold_handle"]

DEFAULT_VERSION = "2026-01"
IDEMPOTENT_FROM = "2026-01"  # refundCreate accepts @idempotent(key:) from this version
HANDLES_FROM = "2025-01"  # fulfillment hold handles and holdIds on release
HOLD_PREFIX = "recoverydesk-"

HOLD_REASONS = frozenset(
    {
        "AWAITING_PAYMENT",
        "HIGH_RISK_OF_FRAUD",
        "INCORRECT_ADDRESS",
        "INVENTORY_OUT_OF_STOCK",
        "UNKNOWN_DELIVERY_DATE",
        "ONLINE_STORE_POST_PURCHASE_CROSS_SELL",
        "AWAITING_RETURN_ITEMS",
        "OTHER",
    }
)
# The desk's hold types (``hold.placed`` ``data.hold_type``) by Shopify's hold reasons: a
# ``release_hold`` with ``hold_type`` frees the holds of that type whoever placed them (Shopify's
# fraud check, a Flow, staff), not only the desk's own.
HOLD_TYPE_REASONS = {
    "fraud": frozenset({"HIGH_RISK_OF_FRAUD"}),
    "address": frozenset({"INCORRECT_ADDRESS"}),
    "inventory": frozenset({"INVENTORY_OUT_OF_STOCK"}),
    "payment": frozenset({"AWAITING_PAYMENT"}),
}
CANCEL_REASONS = frozenset({"CUSTOMER", "DECLINED", "FRAUD", "INVENTORY", "STAFF", "OTHER"})
_VERSION = re.compile(r"^(\d{4}-\d{2}|unstable)$")
_ADDRESS_FIELDS = {
    "address1": "address1",
    "address2": "address2",
    "city": "city",
    "company": "company",
    "country_code": "countryCode",
    "countrycode": "countryCode",
    "province_code": "provinceCode",
    "provincecode": "provinceCode",
    "zip": "zip",
    "first_name": "firstName",
    "firstname": "firstName",
    "last_name": "lastName",
    "lastname": "lastName",
    "phone": "phone",
}

ORDER_QUERY = """
query DeskOrder($id: ID!) {
  order(id: $id) {
    id
    name
    cancelledAt
    currencyCode
    fulfillmentOrders(first: 50) {
      nodes {
        id
        status
        requestStatus
        fulfillmentHolds { id handle reason }
      }
    }
    transactions(first: 50) {
      id
      kind
      status
      gateway
      amountSet { shopMoney { amount currencyCode } }
    }
    refunds(first: 100) {
      id
      note
      totalRefundedSet { shopMoney { amount currencyCode } }
    }
  }
}
"""

HOLD = """
mutation DeskHold($id: ID!, $fulfillmentHold: FulfillmentOrderHoldInput!) {
  fulfillmentOrderHold(id: $id, fulfillmentHold: $fulfillmentHold) {
    fulfillmentHold { id handle reason reasonNotes }
    fulfillmentOrder { id status }
    userErrors { field message code }
  }
}
"""

RELEASE = """
mutation DeskRelease($id: ID!, $holdIds: [ID!]) {
  fulfillmentOrderReleaseHold(id: $id, holdIds: $holdIds) {
    fulfillmentOrder { id status }
    userErrors { field message code }
  }
}
"""

RELEASE_ALL = """
mutation DeskRelease($id: ID!) {
  fulfillmentOrderReleaseHold(id: $id) {
    fulfillmentOrder { id status }
    userErrors { field message code }
  }
}
"""

CANCELLATION_REQUEST = """
mutation DeskCancellationRequest($id: ID!, $message: String) {
  fulfillmentOrderSubmitCancellationRequest(id: $id, message: $message) {
    fulfillmentOrder { id status requestStatus }
    userErrors { field message }
  }
}
"""

ORDER_CANCEL = """
mutation DeskOrderCancel(
  $orderId: ID!, $reason: OrderCancelReason!, $refund: Boolean!, $restock: Boolean!,
  $notifyCustomer: Boolean, $staffNote: String
) {
  orderCancel(
    orderId: $orderId, reason: $reason, refund: $refund, restock: $restock,
    notifyCustomer: $notifyCustomer, staffNote: $staffNote
  ) {
    job { id done }
    orderCancelUserErrors { field message code }
    userErrors { field message }
  }
}
"""

_REFUND_BODY = """{
    refund { id note totalRefundedSet { shopMoney { amount currencyCode } } }
    userErrors { field message }
  }
}
"""
REFUND = (
    "mutation DeskRefund($input: RefundInput!) {\n  refundCreate(input: $input) " + _REFUND_BODY
)
REFUND_IDEMPOTENT = (
    "mutation DeskRefund($input: RefundInput!, $idempotencyKey: String!) {\n"
    "  refundCreate(input: $input) @idempotent(key: $idempotencyKey) " + _REFUND_BODY
)

ORDER_UPDATE = """
mutation DeskAddress($input: OrderInput!) {
  orderUpdate(input: $input) {
    order {
      id
      shippingAddress {
        address1 address2 city company countryCodeV2 provinceCode zip firstName lastName phone
      }
    }
    userErrors { field message }
  }
}
"""


class _Refused(Exception):
    def __init__(self, message: str, **facts: Any) -> None:
        super().__init__(message)
        self.message, self.facts = message, facts


def hold_handle(key: str) -> str:
    """The hold handle of the desk's hold command ``key`` (at most 64 characters)."""
    return HOLD_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:40]


def _at_least(version: str, since: str) -> bool:
    return version == "unstable" or version >= since


class _Api:
    def __init__(
        self, client: httpx.Client, url: str, token: str, timeout: httpx.Timeout, action: str
    ) -> None:
        self._client, self._url, self._timeout = client, url, timeout
        self._headers = {
            "X-Shopify-Access-Token": token,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self.action = action

    def call(self, document: str, variables: dict[str, Any], root: str) -> dict[str, Any]:
        """Run one operation; return ``data[root]`` (a mutation's payload, a query's object)."""
        try:
            response = self._client.post(
                self._url,
                headers=self._headers,
                json={"query": document, "variables": variables},
                timeout=self._timeout,
            )
        except httpx.TimeoutException as error:
            raise OutsideUnavailable(
                f"Shopify {self.action}: timed out ({type(error).__name__})"
            ) from None
        except httpx.HTTPError as error:
            raise OutsideUnavailable(
                f"Shopify {self.action}: {type(error).__name__}: {error}"
            ) from None
        status = response.status_code
        body = _json(response)
        if status == 429 or status >= 500:
            raise OutsideUnavailable(
                f"Shopify {self.action}: HTTP {status}: "
                + (_errors_text(body) or response.reason_phrase)
            )
        if 300 <= status < 400:
            raise OutsideUnavailable(f"Shopify {self.action}: unexpected redirect (HTTP {status})")
        if status >= 400:
            text = _errors_text(body) or response.reason_phrase
            if status == 401:
                text = f"the access token was rejected (check the connection's api_key): {text}"
            elif status == 403:
                text = f"the access token may not do this (missing scope?): {text}"
            raise _Refused(
                f"Shopify refused {self.action}: HTTP {status}: {text}", http_status=status
            )
        if not isinstance(body, dict):
            raise OutsideUnavailable(f"Shopify {self.action}: the answer is not a JSON object")
        _check_throttle(body, self.action)
        errors = body.get("errors")
        if errors:
            raise _Refused(
                f"Shopify refused {self.action}: {_errors_text(body)}",
                shopify_errors=_error_codes(errors),
            )
        data = body.get("data")
        if not isinstance(data, dict) or root not in data:
            raise OutsideUnavailable(f"Shopify {self.action}: the answer has no data.{root}")
        found = data[root]
        if found is None:
            return {}
        if not isinstance(found, dict):
            raise OutsideUnavailable(f"Shopify {self.action}: data.{root} is not an object")
        return found

    def mutate(self, document: str, variables: dict[str, Any], root: str) -> dict[str, Any]:
        payload = self.call(document, variables, root)
        problems = [
            e
            for name in ("userErrors", "orderCancelUserErrors")
            for e in payload.get(name) or []
            if isinstance(e, dict)
        ]
        if problems:
            text = "; ".join(_user_error(e) for e in problems)
            codes = [str(e["code"]) for e in problems if e.get("code")]
            facts: dict[str, Any] = {"user_errors": [_user_error(e) for e in problems]}
            if codes:
                facts["codes"] = codes
            raise _Refused(f"Shopify refused {self.action} ({root}): {text}", **facts)
        return payload


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _errors_text(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    errors = body.get("errors")
    if isinstance(errors, str):
        return errors
    if isinstance(errors, dict):
        return "; ".join(f"{k}: {v}" for k, v in errors.items())
    if isinstance(errors, list):
        return "; ".join(str(e.get("message")) if isinstance(e, dict) else str(e) for e in errors)
    return ""


def _error_codes(errors: Any) -> list[str]:
    if not isinstance(errors, list):
        return []
    codes = []
    for e in errors:
        ext = e.get("extensions") if isinstance(e, dict) else None
        if isinstance(ext, dict) and ext.get("code"):
            codes.append(str(ext["code"]))
    return codes


def _user_error(error: Mapping[str, Any]) -> str:
    field = error.get("field")
    where = ".".join(str(f) for f in field) if isinstance(field, list) and field else ""
    message = str(error.get("message") or "unknown error")
    return f"{message} ({where})" if where else message


def _check_throttle(body: Mapping[str, Any], action: str) -> None:
    """THROTTLED in ``errors`` (or a cost the bucket cannot pay) means: retry later."""
    extensions = body.get("extensions")
    cost = extensions.get("cost") if isinstance(extensions, dict) else None
    status = cost.get("throttleStatus") if isinstance(cost, dict) else None
    throttled = "THROTTLED" in _error_codes(body.get("errors"))
    wait = ""
    if isinstance(cost, dict) and isinstance(status, dict):
        try:
            requested = float(cost.get("requestedQueryCost") or 0)
            available = float(status.get("currentlyAvailable") or 0)
            rate = float(status.get("restoreRate") or 0)
        except (TypeError, ValueError):
            requested = available = rate = 0.0
        if cost.get("actualQueryCost") is None and body.get("errors") and requested > available:
            throttled = True
        if rate > 0 and requested > available:
            wait = f", about {(requested - available) / rate:.1f}s until the bucket refills"
    if throttled:
        raise OutsideUnavailable(f"Shopify {action}: THROTTLED{wait}", code="throttled")


def _gid(kind: str, value: str) -> str:
    return value if value.startswith("gid://") else f"gid://shopify/{kind}/{value}"


def _order_gid(command: OutsideCommand) -> str:
    ref = command.order_ids.get("shopify_order_id") or command.order_ref
    if not ref:
        raise _Refused(f"{command.action}: no Shopify order id (order ids: shopify_order_id)")
    ref = str(ref)
    if not ref.startswith("gid://") and not ref.isdigit():
        raise _Refused(
            f"{command.action}: {ref!r} is not a Shopify order id (order ids: shopify_order_id)"
        )
    return _gid("Order", ref)


def _order(api: _Api, gid: str) -> dict[str, Any]:
    order = api.call(ORDER_QUERY, {"id": gid}, "order")
    if not order:
        raise _Refused(f"Shopify refused {api.action}: order {gid} was not found")
    return order


def _fulfillment_orders(order: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = order.get("fulfillmentOrders")
    nodes = found.get("nodes") if isinstance(found, dict) else None
    return [n for n in nodes or [] if isinstance(n, dict)]


def _statuses(fos: list[dict[str, Any]]) -> dict[str, str]:
    return {str(fo["id"]): f"{fo.get('status')}/{fo.get('requestStatus')}" for fo in fos}


# -- the actions ----------------------------------------------------------------------------------


def _hold(api: _Api, command: OutsideCommand, version: str) -> OutsideAnswer:
    gid = _order_gid(command)
    fos = _fulfillment_orders(_order(api, gid))
    with_handles = _at_least(version, HANDLES_FROM)
    handle = hold_handle(command.key)
    raw_reason = str(command.params.get("reason") or "").strip()
    reason = raw_reason.upper() if raw_reason.upper() in HOLD_REASONS else "OTHER"
    notes = str(command.params.get("notes") or raw_reason or "held by the order recovery desk")
    hold: dict[str, Any] = {
        "reason": reason,
        "reasonNotes": f"{notes} [{command.key}]"[:255],
        "notifyMerchant": False,
    }
    if with_handles:
        hold["handle"] = handle
    held: list[str] = []
    already: list[str] = []
    skipped: dict[str, str] = {}
    hold_ids: list[str] = []
    for fo in fos:
        status = str(fo.get("status"))
        mine = [h for h in fo.get("fulfillmentHolds") or [] if h.get("handle") == handle]
        if status == "ON_HOLD" and (mine or not with_handles):
            already.append(fo["id"])
            hold_ids.extend(str(h["id"]) for h in mine)
            continue
        if status not in ("OPEN", "ON_HOLD"):
            skipped[str(fo["id"])] = status
            continue
        payload = api.mutate(
            HOLD, {"id": fo["id"], "fulfillmentHold": hold}, "fulfillmentOrderHold"
        )
        held.append(fo["id"])
        placed = payload.get("fulfillmentHold") or {}
        if placed.get("id"):
            hold_ids.append(str(placed["id"]))
    if not held and not already:
        raise _Refused(
            f"Shopify: order {gid} has no open fulfillment order to hold "
            f"({', '.join(f'{k}: {v}' for k, v in skipped.items()) or 'none at all'})",
            fulfillment_orders=_statuses(fos),
        )
    return OutsideAnswer(
        accepted=True,
        reference=hold_ids[0] if hold_ids else gid,
        facts={
            "held": held,
            "already_held": already,
            "not_holdable": skipped,
            "hold_ids": hold_ids,
            "handle": handle if with_handles else None,
            "status": "on_hold",
        },
    )


def _release(api: _Api, command: OutsideCommand, version: str) -> OutsideAnswer:
    gid = _order_gid(command)
    fos = _fulfillment_orders(_order(api, gid))
    with_handles = _at_least(version, HANDLES_FROM)
    hold_key = command.params.get("hold_key")
    wanted = hold_handle(str(hold_key)) if hold_key else None
    types = HOLD_TYPE_REASONS.get(str(command.params.get("hold_type") or ""), frozenset())
    released: list[str] = []
    for fo in fos:
        if fo.get("status") != "ON_HOLD":
            continue
        if not with_handles:
            api.mutate(RELEASE_ALL, {"id": fo["id"]}, "fulfillmentOrderReleaseHold")
            released.append(str(fo["id"]))
            continue
        ids = [str(h["id"]) for h in fo.get("fulfillmentHolds") or [] if _freed(h, wanted, types)]
        if ids:
            api.mutate(RELEASE, {"id": fo["id"], "holdIds": ids}, "fulfillmentOrderReleaseHold")
            released.append(str(fo["id"]))
    return OutsideAnswer(
        accepted=True,
        reference=gid,
        facts={"released": released, "already_released": not released},
    )


def _freed(hold: Mapping[str, Any], wanted: str | None, reasons: frozenset[str]) -> bool:
    """Whether a release frees this hold: the one named by its key; else the desk's own holds
    and those of the hold type asked for (``hold_type``), whoever placed them."""
    handle = str(hold.get("handle") or "")
    if wanted:
        return handle == wanted
    return handle.startswith(HOLD_PREFIX) or str(hold.get("reason") or "") in reasons


def _cancellation_request(api: _Api, command: OutsideCommand, version: str) -> OutsideAnswer:
    gid = _order_gid(command)
    fos = _fulfillment_orders(_order(api, gid))
    message = str(command.params.get("message") or command.params.get("reason") or "")
    message = f"{message} [{command.key}]".strip()[:255]
    requested, already, done, other = [], [], [], {}
    for fo in fos:
        status, request = str(fo.get("status")), str(fo.get("requestStatus"))
        if request == "CANCELLATION_REQUESTED":
            already.append(fo["id"])
        elif status in ("CANCELLED", "CLOSED") or request == "CANCELLATION_ACCEPTED":
            done.append(fo["id"])
        elif request == "ACCEPTED":
            api.mutate(
                CANCELLATION_REQUEST,
                {"id": fo["id"], "message": message},
                "fulfillmentOrderSubmitCancellationRequest",
            )
            requested.append(fo["id"])
        else:
            other[str(fo["id"])] = f"{status}/{request}"
    if not requested and not already and not done:
        raise _Refused(
            f"Shopify: order {gid} has no fulfillment order accepted by a fulfillment service "
            f"to ask to cancel ({', '.join(f'{k}: {v}' for k, v in other.items()) or 'none'})",
            fulfillment_orders=_statuses(fos),
        )
    return OutsideAnswer(
        accepted=True,
        reference=gid,
        facts={
            "cancellation_requested": requested,
            "already_requested": already,
            "already_cancelled": done,
            "not_requestable": other,
            "status": "cancellation_requested",
        },
    )


def _order_cancel(api: _Api, command: OutsideCommand, version: str) -> OutsideAnswer:
    gid = _order_gid(command)
    order = _order(api, gid)
    if order.get("cancelledAt"):
        return OutsideAnswer(
            accepted=True,
            reference=gid,
            facts={"already_cancelled": True, "cancelled_at": order["cancelledAt"]},
        )
    reason = str(command.params.get("reason") or "OTHER").upper()
    if reason not in CANCEL_REASONS:
        reason = "OTHER"
    note = str(command.params.get("staff_note") or "Cancelled by the order recovery desk")
    payload = api.mutate(
        ORDER_CANCEL,
        {
            "orderId": gid,
            "reason": reason,
            "refund": False,
            "restock": True,
            "notifyCustomer": False,
            "staffNote": f"{note} [{command.key}]"[:255],
        },
        "orderCancel",
    )
    job = payload.get("job") or {}
    return OutsideAnswer(
        accepted=True,
        reference=str(job.get("id") or gid),
        facts={"job_done": bool(job.get("done")), "reason": reason},
    )


def _refund(api: _Api, command: OutsideCommand, version: str) -> OutsideAnswer:
    currency = str(command.params.get("currency") or "").upper()
    try:
        amount = Decimal(str(command.params.get("amount")))
    except InvalidOperation:
        raise _Refused(f"refund: amount {command.params.get('amount')!r} is not a number") from None
    if not amount.is_finite() or amount <= 0:
        raise _Refused(f"refund: amount {amount} is not a positive amount")
    gid = _order_gid(command)
    order = _order(api, gid)
    for refund in order.get("refunds") or []:
        if command.key in str(refund.get("note") or ""):
            return OutsideAnswer(
                accepted=True,
                reference=str(refund["id"]),
                facts={"already_refunded": True, **_refunded(refund)},
            )
    paid_in = str(order.get("currencyCode") or "").upper()
    if currency and paid_in and currency != paid_in:
        raise _Refused(f"refund: the order is in {paid_in}, the refund asked in {currency}")
    parent = next(
        (
            t
            for t in order.get("transactions") or []
            if t.get("kind") in ("SALE", "CAPTURE") and t.get("status") == "SUCCESS"
        ),
        None,
    )
    if parent is None:
        raise _Refused(f"refund: order {gid} has no successful sale or capture to refund")
    refund_input = {
        "orderId": gid,
        "note": f"Refund by the order recovery desk [{command.key}]",
        "notify": False,
        "transactions": [
            {
                "orderId": gid,
                "parentId": parent["id"],
                "amount": str(amount),
                "gateway": parent.get("gateway") or "manual",
                "kind": "REFUND",
            }
        ],
    }
    if _at_least(version, IDEMPOTENT_FROM):
        payload = api.mutate(
            REFUND_IDEMPOTENT,
            {"input": refund_input, "idempotencyKey": command.key},
            "refundCreate",
        )
    else:
        payload = api.mutate(REFUND, {"input": refund_input}, "refundCreate")
    refund = payload.get("refund") or {}
    return OutsideAnswer(accepted=True, reference=refund.get("id"), facts=_refunded(refund))


def _refunded(refund: Mapping[str, Any]) -> dict[str, Any]:
    money = (refund.get("totalRefundedSet") or {}).get("shopMoney") or {}
    return {"amount": money.get("amount"), "currency": money.get("currencyCode")}


def _address_update(api: _Api, command: OutsideCommand, version: str) -> OutsideAnswer:
    source = command.params.get("address")
    fields: Mapping[str, Any] = source if isinstance(source, Mapping) else command.params
    address: dict[str, Any] = {}
    for name, value in fields.items():
        target = _ADDRESS_FIELDS.get(str(name).lower())
        if target is not None and value is not None:
            address[target] = str(value)
    if not address:
        raise _Refused(
            "address_update: no address fields (address1, city, zip, country_code ...) in params"
        )
    gid = _order_gid(command)
    payload = api.mutate(
        ORDER_UPDATE, {"input": {"id": gid, "shippingAddress": address}}, "orderUpdate"
    )
    order = payload.get("order") or {}
    return OutsideAnswer(
        accepted=True,
        reference=str(order.get("id") or gid),
        facts={"shipping_address": order.get("shippingAddress") or address},
    )


def _line_swap(api: _Api, command: OutsideCommand, version: str) -> OutsideAnswer:
    return line_swap(api, command, _order_gid(command))


_Action = Callable[[_Api, OutsideCommand, str], OutsideAnswer]
_ACTIONS: dict[str, _Action] = {
    "wms_hold": _hold,
    "release_hold": _release,
    "wms_cancel": _cancellation_request,
    "order_cancel": _order_cancel,
    "refund": _refund,
    "address_update": _address_update,
    "line_swap": _line_swap,
}


class ShopifyAdmin(SharedClient):
    """``OutsideSystems`` for the Shopify Admin GraphQL API; one HTTP client, shared by threads."""

    def send(self, command: OutsideCommand) -> OutsideAnswer:
        action = _ACTIONS.get(command.action)
        if action is None:
            return OutsideAnswer(
                accepted=False,
                message=f"the shopify_admin connector does not do {command.action!r}",
                facts={"code": "unsupported_action"},
            )
        connection = command.connection
        base_url = str(connection.get("base_url") or "").rstrip("/")
        base_url = base_url.removesuffix("/admin")
        token = str(connection.get("api_key") or "")
        version = str(connection.get("api_version") or DEFAULT_VERSION)
        if not base_url or not token:
            return OutsideAnswer(
                accepted=False,
                message="the shopify_admin connection needs base_url and api_key",
                facts={"code": "connection_incomplete"},
            )
        if not _VERSION.match(version):
            return OutsideAnswer(
                accepted=False,
                message=f"api_version {version!r} is not a Shopify API version (e.g. 2026-01)",
                facts={"code": "connection_invalid"},
            )
        api = _Api(
            self._http(),
            f"{base_url}/admin/api/{version}/graphql.json",
            token,
            _timeout(connection.get("timeout_seconds"), self._timeout),
            command.action,
        )
        try:
            return action(api, command, version)
        except _Refused as refused:
            return OutsideAnswer(accepted=False, message=refused.message, facts=refused.facts)


def _timeout(configured: object, default: float) -> httpx.Timeout:
    seconds = default
    if isinstance(configured, int | float) and not isinstance(configured, bool) and configured > 0:
        seconds = float(configured)
    return httpx.Timeout(seconds, connect=min(seconds, 5.0))
