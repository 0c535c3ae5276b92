"""Order editing for the Shopify emulator (``sandbox.shopify_emulator``), a mixin of it.

Emulated: the ``productVariants(query: "sku:...")`` query over the shop's variants (every sku of
an order's lines has one; ``add_variant`` adds more), the order's ``lineItems`` and ``closed`` on
the ``order`` query, and ``orderEditBegin`` -> ``orderEditAddVariant`` / ``orderEditSetQuantity``
-> ``orderEditCommit`` over a calculated order (``gid://shopify/CalculatedOrder/<n>``; an existing
line is ``gid://shopify/CalculatedLineItem/<its line item number>``, as Shopify does).

Shopify's checks, as ``userErrors``: an order that does not exist, is cancelled or is archived
(``close_order``) cannot be edited; a variant unknown, or already on the order without
``allowDuplicates``; a quantity below one to add, or below what was fulfilled (``fulfil``) to
set; an unknown calculated order or line. A commit applies the staged changes: quantities
(``current_quantity``, ``fulfillable_quantity``, the fulfillment order's lines) and the added lines
(on the first fulfillment order still open), records the edit in ``committed_edits`` (with its
``staffNote`` and ``notifyCustomer``) and queues ``orders/updated`` (the REST order, as Shopify
sends after an edit); ``orders/edited`` (the OrderEdit summary) is queued only when ``topics``
names it, since the desk does not subscribe to it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recoverydesk.sandbox.shopify_emulator import _FulfillmentOrder, _Order

__all__ = ["EDIT_HANDLERS", "EDIT_PAYLOADS", "EDIT_REQUIRED", "QUERIES", "OrderEditing"]

QUERIES = ("order", "productVariants")
EDIT_REQUIRED: dict[str, tuple[tuple[str, str], ...]] = {
    "productVariants": (),
    "orderEditBegin": (("id", "ID!"),),
    "orderEditAddVariant": (("id", "ID!"), ("variantId", "ID!"), ("quantity", "Int!")),
    "orderEditSetQuantity": (("id", "ID!"), ("lineItemId", "ID!"), ("quantity", "Int!")),
    "orderEditCommit": (("id", "ID!"),),
}
EDIT_HANDLERS = {
    "productVariants": "product_variants",
    "orderEditBegin": "edit_begin",
    "orderEditAddVariant": "edit_add_variant",
    "orderEditSetQuantity": "edit_set_quantity",
    "orderEditCommit": "edit_commit",
}
EDIT_PAYLOADS: dict[str, dict[str, Any]] = {
    "orderEditBegin": {"calculatedOrder": None, "orderEditSession": None},
    "orderEditAddVariant": {"calculatedLineItem": None, "calculatedOrder": None},
    "orderEditSetQuantity": {"calculatedLineItem": None, "calculatedOrder": None},
    "orderEditCommit": {"order": None, "successMessages": None},
}
_EDITABLE = ("OPEN", "ON_HOLD", "SCHEDULED")
_SKU_QUERY = re.compile(r'^\s*sku:(?:"((?:[^"\\]|\\.)*)"|(\S+))\s*$')


@dataclass
class _Edit:
    id: str
    order_id: str
    quantities: dict[str, int] = field(default_factory=dict)  # line item gid -> staged quantity
    added: list[dict[str, Any]] = field(default_factory=list)  # {id, variant, quantity}


def _refuse(root: str, message: str, *where: str) -> Exception:
    from recoverydesk.sandbox.shopify_emulator import UserErrors

    return UserErrors(root, [{"field": list(where) or None, "message": message}])


def _calc_line(line_number: int | str) -> str:
    return f"gid://shopify/CalculatedLineItem/{line_number}"


class OrderEditing:
    """The order-editing half of ``ShopifyEmulator`` (called with its lock held)."""

    orders: dict[str, _Order]
    fulfillment_orders: dict[str, _FulfillmentOrder]
    topics: set[str] | None
    _ids: itertools.count[int]
    _clock: Callable[[], datetime]

    def _queue(self, topic: str, body: dict[str, Any]) -> None:
        raise NotImplementedError

    def _order_resource(self, order: _Order) -> dict[str, Any]:
        raise NotImplementedError

    def _line_item(self, sku: str, quantity: int, price: Decimal) -> dict[str, Any]:
        raise NotImplementedError

    def _fo_line(self, fo: _FulfillmentOrder, line: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    # -- setting the shop up ---------------------------------------------------------------------

    def add_variant(self, sku: str, price: str = "10.00", title: str | None = None) -> str:
        """A product variant the shop sells (its GraphQL id)."""
        return str(self._variant_for(sku, Decimal(price), title)["id"])

    def fulfil(self, number: str) -> None:
        """Every line of the order shipped: its fulfillment orders closed."""
        order = self.orders[f"gid://shopify/Order/{number}"]
        for line in order.line_items:
            line["fulfillable_quantity"], line["fulfillment_status"] = 0, "fulfilled"
        for fo_id in order.fulfillment_orders:
            self.fulfillment_orders[fo_id].status = "CLOSED"

    def close_order(self, number: str) -> None:
        """The order archived (closed) in the admin."""
        self.orders[f"gid://shopify/Order/{number}"].closed_at = "2020-01-01T00:00:00Z"

    def _start_editing(self) -> None:
        self.variants: dict[str, dict[str, Any]] = {}  # by sku
        self.edits: dict[str, _Edit] = {}  # open edits, by calculated order id
        self.committed_edits: list[dict[str, Any]] = []  # the OrderEdit summaries committed

    def _variant_for(self, sku: str, price: Decimal, title: str | None = None) -> dict[str, Any]:
        if sku not in self.variants:
            self.variants[sku] = {
                "id": f"gid://shopify/ProductVariant/{next(self._ids)}",
                "product_id": next(self._ids),
                "sku": sku,
                "title": title or sku,
                "price": f"{price:.2f}",
            }
        return self.variants[sku]

    def _order_lines(self, order: _Order) -> dict[str, Any]:
        """What the ``order`` query adds for editing: ``closed`` and ``lineItems``."""
        return {
            "closed": order.closed_at is not None,
            "lineItems": {
                "nodes": [
                    {
                        "id": line["admin_graphql_api_id"],
                        "sku": line["sku"],
                        "quantity": line["quantity"],
                        "currentQuantity": line["current_quantity"],
                        "unfulfilledQuantity": line["fulfillable_quantity"],
                        "variant": {"id": self.variants[line["sku"]]["id"]},
                    }
                    for line in order.line_items
                ]
            },
        }

    # -- GraphQL ---------------------------------------------------------------------------------

    def _op_product_variants(self, args: dict[str, Any]) -> dict[str, Any]:
        match = _SKU_QUERY.match(str(args.get("query") or ""))
        wanted = (match.group(1) or match.group(2)) if match else None
        nodes = [
            {"id": v["id"], "sku": v["sku"], "title": v["title"]}
            for v in self.variants.values()
            if wanted is None or v["sku"] == wanted.replace('\\"', '"')
        ]
        return {"nodes": nodes[: int(args.get("first") or 10)]}

    def _op_edit_begin(self, args: dict[str, Any]) -> dict[str, Any]:
        root = "orderEditBegin"
        order = self.orders.get(str(args["id"]))
        if order is None:
            raise _refuse(root, "The order does not exist.", "id")
        if order.cancelled_at is not None:
            raise _refuse(root, "A cancelled order cannot be edited.", "id")
        if order.closed_at is not None:
            raise _refuse(root, "An archived order cannot be edited.", "id")
        edit = _Edit(f"gid://shopify/CalculatedOrder/{next(self._ids)}", order.id)
        self.edits[edit.id] = edit
        return {"calculatedOrder": self._calculated(edit), "userErrors": []}

    def _op_edit_add_variant(self, args: dict[str, Any]) -> dict[str, Any]:
        root = "orderEditAddVariant"
        edit = self._edit(root, args["id"])
        variant = next((v for v in self.variants.values() if v["id"] == args["variantId"]), None)
        if variant is None:
            raise _refuse(root, "The variant does not exist.", "variantId")
        quantity = int(args["quantity"])
        if quantity < 1:
            raise _refuse(root, "Quantity must be greater than or equal to 1.", "quantity")
        on_order = [n["sku"] for n in self._calculated(edit)["lineItems"]["nodes"]]
        if variant["sku"] in on_order and not args.get("allowDuplicates"):
            raise _refuse(root, "The variant is already on the order.", "variantId")
        added = {"id": _calc_line(next(self._ids)), "variant": variant, "quantity": quantity}
        edit.added.append(added)
        line = {"id": added["id"], "sku": variant["sku"], "quantity": quantity}
        return {"calculatedLineItem": line, "calculatedOrder": {"id": edit.id}, "userErrors": []}

    def _op_edit_set_quantity(self, args: dict[str, Any]) -> dict[str, Any]:
        root = "orderEditSetQuantity"
        edit = self._edit(root, args["id"])
        quantity, wanted = int(args["quantity"]), str(args["lineItemId"])
        if quantity < 0:
            raise _refuse(root, "Quantity cannot be negative.", "quantity")
        added = next((a for a in edit.added if a["id"] == wanted), None)
        if added is not None:
            added["quantity"] = quantity
        else:
            line = self._line_of(edit, wanted)
            if line is None:
                raise _refuse(root, "The line item does not exist.", "lineItemId")
            fulfilled = line["current_quantity"] - line["fulfillable_quantity"]
            if quantity < fulfilled:
                raise _refuse(
                    root,
                    f"The line item has {fulfilled} fulfilled: its quantity cannot go below that.",
                    "quantity",
                )
            edit.quantities[line["admin_graphql_api_id"]] = quantity
        answer = {"id": wanted, "quantity": quantity}
        return {"calculatedLineItem": answer, "calculatedOrder": {"id": edit.id}, "userErrors": []}

    def _op_edit_commit(self, args: dict[str, Any]) -> dict[str, Any]:
        root = "orderEditCommit"
        edit = self._edit(root, args["id"])
        order = self.orders[edit.order_id]
        changes = self._apply(order, edit)
        del self.edits[edit.id]
        now = self._clock()
        order.updated_at = now
        summary = {
            "id": next(self._ids),
            "order_id": int(order.id.rsplit("/", 1)[1]),
            "staff_note": args.get("staffNote"),
            "notify_customer": bool(args.get("notifyCustomer")),
            "created_at": now.isoformat(),
            "line_items": changes,
        }
        self.committed_edits.append(summary)
        if self.topics is not None and "orders/edited" in self.topics:
            self._queue("orders/edited", {"order_edit": dict(summary)})
        self._queue("orders/updated", self._order_resource(order))
        return {
            "order": {"id": order.id},
            "successMessages": ["Order updated"],
            "userErrors": [],
        }

    # -- the calculated order ------------------------------------------------------------------

    def _edit(self, root: str, gid: Any) -> _Edit:
        edit = self.edits.get(str(gid))
        if edit is None:
            raise _refuse(root, "The calculated order does not exist.", "id")
        return edit

    def _line_of(self, edit: _Edit, calc_id: str) -> dict[str, Any] | None:
        order = self.orders[edit.order_id]
        return next((li for li in order.line_items if _calc_line(li["id"]) == calc_id), None)

    def _calculated(self, edit: _Edit) -> dict[str, Any]:
        order = self.orders[edit.order_id]
        nodes = []
        for line in order.line_items:
            quantity = edit.quantities.get(line["admin_graphql_api_id"], line["current_quantity"])
            fulfilled = line["current_quantity"] - line["fulfillable_quantity"]
            nodes.append(
                {
                    "id": _calc_line(line["id"]),
                    "sku": line["sku"],
                    "quantity": quantity,
                    "editableQuantity": quantity - fulfilled,
                }
            )
        added = [
            {"id": a["id"], "sku": a["variant"]["sku"], "quantity": a["quantity"]}
            for a in edit.added
        ]
        return {"id": edit.id, "lineItems": {"nodes": nodes}, "addedLineItems": {"nodes": added}}

    def _apply(self, order: _Order, edit: _Edit) -> dict[str, list[dict[str, Any]]]:
        """The staged changes made; the OrderEdit's ``additions`` and ``removals``."""
        changes: dict[str, list[dict[str, Any]]] = {"additions": [], "removals": []}
        for line in order.line_items:
            quantity = edit.quantities.get(line["admin_graphql_api_id"])
            if quantity is None or quantity == line["current_quantity"]:
                continue
            delta = quantity - line["current_quantity"]
            changes["additions" if delta > 0 else "removals"].append(
                {"id": line["id"], "delta": abs(delta)}
            )
            line["fulfillable_quantity"] = max(line["fulfillable_quantity"] + delta, 0)
            line["current_quantity"] = quantity
            self._fo_quantity(order, line)
        for added in edit.added:
            if added["quantity"] < 1:
                continue
            variant = added["variant"]
            line = self._line_item(variant["sku"], added["quantity"], Decimal(variant["price"]))
            order.line_items.append(line)
            changes["additions"].append({"id": line["id"], "delta": added["quantity"]})
            fo = next(
                (
                    self.fulfillment_orders[i]
                    for i in order.fulfillment_orders
                    if self.fulfillment_orders[i].status in _EDITABLE
                ),
                None,
            )
            if fo is not None:
                fo.line_items.append(self._fo_line(fo, line))
        return changes

    def _fo_quantity(self, order: _Order, line: dict[str, Any]) -> None:
        for fo_id in order.fulfillment_orders:
            for fo_line in self.fulfillment_orders[fo_id].line_items:
                if fo_line["line_item_id"] == line["id"]:
                    fo_line["quantity"] = line["current_quantity"]
                    fo_line["fulfillable_quantity"] = line["fulfillable_quantity"]
