"""``line_swap`` for the Shopify Admin connector: one line of an order swapped for a substitute
through Shopify's order editing (Admin GraphQL).

The command's params: ``sku`` (the line to take out), ``substitute`` (the sku to put in) and
``qty`` (default: the line's current quantity). The substitute's variant is found by its sku
(``productVariants(query: "sku:...")``, an exact match). Then ``orderEditBegin`` ->
``orderEditAddVariant`` (or ``orderEditSetQuantity`` up, when the substitute is on the order
already) -> ``orderEditSetQuantity`` 0 on the swapped line (restocked) -> ``orderEditCommit`` with
``notifyCustomer: false`` and a ``staffNote`` naming the desk's key.

Shopify's order edit takes no idempotency key, so the order's lines are read first: the swapped
line at quantity 0 and the substitute on the order mean the swap was made (a retry after a lost
answer): accepted with ``already_done: true``, nothing sent. An edit begun but never committed is
discarded by Shopify, so a retry after a failure half-way starts over cleanly.

Refusals: an order without a line of ``sku``, a substitute sku no variant has, and whatever
Shopify refuses (``userErrors``: a cancelled or archived order, a line already fulfilled ...).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from recoverydesk.services.ports import OutsideAnswer, OutsideCommand

__all__ = ["GraphQL", "line_swap"]

ORDER_LINES = """
query DeskOrderLines($id: ID!) {
  order(id: $id) {
    id
    cancelledAt
    closed
    lineItems(first: 250) {
      nodes { id sku quantity currentQuantity unfulfilledQuantity variant { id } }
    }
  }
}
"""

VARIANT_BY_SKU = """
query DeskVariantBySku($query: String!) {
  productVariants(first: 10, query: $query) { nodes { id sku title } }
}
"""

EDIT_BEGIN = """
mutation DeskEditBegin($id: ID!) {
  orderEditBegin(id: $id) {
    calculatedOrder { id lineItems(first: 250) { nodes { id sku quantity editableQuantity } } }
    userErrors { field message }
  }
}
"""

EDIT_ADD_VARIANT = """
mutation DeskEditAddVariant($id: ID!, $variantId: ID!, $quantity: Int!) {
  orderEditAddVariant(id: $id, variantId: $variantId, quantity: $quantity, allowDuplicates: false) {
    calculatedLineItem { id sku quantity }
    userErrors { field message }
  }
}
"""

EDIT_SET_QUANTITY = """
mutation DeskEditSetQuantity($id: ID!, $lineItemId: ID!, $quantity: Int!, $restock: Boolean) {
  orderEditSetQuantity(id: $id, lineItemId: $lineItemId, quantity: $quantity, restock: $restock) {
    calculatedLineItem { id quantity }
    userErrors { field message }
  }
}
"""

EDIT_COMMIT = """
mutation DeskEditCommit($id: ID!, $notifyCustomer: Boolean, $staffNote: String) {
  orderEditCommit(id: $id, notifyCustomer: $notifyCustomer, staffNote: $staffNote) {
    order { id }
    userErrors { field message }
  }
}
"""


class GraphQL(Protocol):
    """What the connector's Admin API client offers (``shopify_admin._Api``)."""

    action: str

    def call(self, document: str, variables: dict[str, Any], root: str) -> dict[str, Any]: ...

    def mutate(self, document: str, variables: dict[str, Any], root: str) -> dict[str, Any]: ...


def _refusal(message: str, code: str, **facts: Any) -> OutsideAnswer:
    return OutsideAnswer(accepted=False, message=message, facts={"code": code, **facts})


def _nodes(found: Any) -> list[dict[str, Any]]:
    nodes = found.get("nodes") if isinstance(found, dict) else None
    return [n for n in nodes or [] if isinstance(n, dict)]


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def line_swap(api: GraphQL, command: OutsideCommand, order_gid: str) -> OutsideAnswer:
    """Swap the order's line of ``sku`` for ``substitute``; see the module docstring."""
    sku, substitute = (str(command.params.get(k) or "") for k in ("sku", "substitute"))
    if not sku or not substitute:
        return _refusal("line_swap needs sku and substitute", "params_incomplete")
    order = api.call(ORDER_LINES, {"id": order_gid}, "order")
    if not order:
        return _refusal(f"Shopify refused line_swap: order {order_gid} was not found", "not_found")
    lines = _nodes(order.get("lineItems"))
    old = [n for n in lines if n.get("sku") == sku and _count(n.get("currentQuantity")) > 0]
    new = [n for n in lines if n.get("sku") == substitute and _count(n.get("currentQuantity")) > 0]
    swapped = any(n.get("sku") == sku for n in lines)
    if not old and new and swapped:
        return OutsideAnswer(
            accepted=True,
            reference=order_gid,
            facts={"swapped": sku, "substitute": substitute, "already_done": True},
        )
    if not old:
        return _refusal(
            f"line_swap: order {order_gid} has no line of {sku!r} left to swap",
            "line_not_found",
        )
    qty = _count(command.params.get("qty")) or _count(old[0].get("currentQuantity"))
    variant = _variant(api, substitute)
    if variant is None:
        return _refusal(
            f"line_swap: no product variant has the sku {substitute!r}", "variant_not_found"
        )
    edit = _edit(api, command, order_gid, sku=sku, substitute=substitute, variant=variant, qty=qty)
    return OutsideAnswer(
        accepted=True,
        reference=order_gid,
        facts={
            "swapped": sku,
            "substitute": substitute,
            "qty": qty,
            "variant_id": variant,
            "order_edit": edit,
            "already_done": False,
        },
    )


def _variant(api: GraphQL, sku: str) -> str | None:
    query = f"sku:{json.dumps(sku)}"
    found = api.call(VARIANT_BY_SKU, {"query": query}, "productVariants")
    exact = [n for n in _nodes(found) if n.get("sku") == sku and n.get("id")]
    return str(exact[0]["id"]) if exact else None


def _edit(
    api: GraphQL,
    command: OutsideCommand,
    order_gid: str,
    *,
    sku: str,
    substitute: str,
    variant: str,
    qty: int,
) -> str:
    """Begin, stage the swap, commit; the calculated order's id."""
    begun = api.mutate(EDIT_BEGIN, {"id": order_gid}, "orderEditBegin")
    calculated = begun.get("calculatedOrder") or {}
    edit = str(calculated.get("id") or "")
    lines = _nodes(calculated.get("lineItems"))
    there = next((n for n in lines if n.get("sku") == substitute), None)
    if there is None:
        api.mutate(
            EDIT_ADD_VARIANT,
            {"id": edit, "variantId": variant, "quantity": qty},
            "orderEditAddVariant",
        )
    else:
        more = _count(there.get("quantity")) + qty
        _set_quantity(api, edit, str(there["id"]), more)
    for line in lines:
        if line.get("sku") == sku and _count(line.get("quantity")) > 0:
            _set_quantity(api, edit, str(line["id"]), 0)
    note = f"Line swap {sku} -> {substitute} by the order recovery desk [{command.key}]"
    api.mutate(
        EDIT_COMMIT,
        {"id": edit, "notifyCustomer": False, "staffNote": note[:255]},
        "orderEditCommit",
    )
    return edit


def _set_quantity(api: GraphQL, edit: str, line: str, quantity: int) -> None:
    api.mutate(
        EDIT_SET_QUANTITY,
        {"id": edit, "lineItemId": line, "quantity": quantity, "restock": True},
        "orderEditSetQuantity",
    )
