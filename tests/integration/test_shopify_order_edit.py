"""``line_swap`` through Shopify's order editing, over real HTTP against the Shopify emulator.

The connector reads the order's lines, finds the substitute's variant by sku, then
``orderEditBegin`` -> ``orderEditAddVariant`` -> ``orderEditSetQuantity`` 0 -> ``orderEditCommit``
(``notifyCustomer: false``, the desk's key in the staff note). A retry finds the swap made.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from recoverydesk.connectors.shopify_admin import ShopifyAdmin
from recoverydesk.sandbox.shopify_emulator import (
    TEST_TOKEN,
    RunningShopify,
    running_shopify_emulator,
)
from recoverydesk.services.ports import OutsideCommand

KEY = "playbook:acme:12:substitute:1"


@pytest.fixture
def shop() -> Iterator[RunningShopify]:
    with running_shopify_emulator() as running:
        yield running


@pytest.fixture
def connector() -> Iterator[ShopifyAdmin]:
    shopify = ShopifyAdmin(timeout=5.0)
    yield shopify
    shopify.close()


def _swap(shop: RunningShopify, order_id: str, **params: Any) -> OutsideCommand:
    return OutsideCommand(
        merchant_id=1,
        order_ref=order_id,
        system="storefront",
        action="line_swap",
        key=KEY,
        params={"sku": "LAMP", "substitute": "LAMP-XL", "qty": 1, **params},
        connection={"kind": "shopify_admin", "base_url": shop.base_url, "api_key": TEST_TOKEN},
        order_ids={"shopify_order_id": order_id},
    )


def _lines(shop: RunningShopify, order_id: str) -> dict[str, tuple[int, int]]:
    """sku -> (current quantity, still to fulfil)."""
    return {
        li["sku"]: (li["current_quantity"], li["fulfillable_quantity"])
        for li in shop.emulator.order(order_id).line_items
    }


def _roots(shop: RunningShopify) -> list[str]:
    found = []
    for request in shop.emulator.requests:
        match = re.search(r"\{\s*(\w+)\s*\(", request["query"])
        assert match, request["query"]
        found.append(match.group(1))
    return found


@pytest.fixture
def order(shop: RunningShopify) -> str:
    shop.emulator.add_variant("LAMP-XL", "139.00")
    return shop.emulator.add_order(
        paid="209.00", lines=[("LAMP", 1, "129.00"), ("DESK", 1, "80.00")]
    )


def test_a_short_line_is_swapped_for_its_substitute_in_shopify(
    shop: RunningShopify, connector: ShopifyAdmin, order: str
) -> None:
    # when the desk swaps the lamp for the larger lamp
    answer = connector.send(_swap(shop, order))
    # then the order has the substitute and the lamp at nothing, the desk stays as it was
    assert answer.accepted, answer.message
    assert _lines(shop, order) == {"LAMP": (0, 0), "DESK": (1, 1), "LAMP-XL": (1, 1)}
    assert answer.facts["already_done"] is False
    assert answer.facts["variant_id"] == shop.emulator.variants["LAMP-XL"]["id"]
    assert answer.reference == f"gid://shopify/Order/{order}"
    # and it went through Shopify's order edit, in order, without telling the customer
    assert _roots(shop) == [
        "order",
        "productVariants",
        "orderEditBegin",
        "orderEditAddVariant",
        "orderEditSetQuantity",
        "orderEditCommit",
    ]
    [edit] = shop.emulator.committed_edits
    assert edit["notify_customer"] is False
    assert KEY in edit["staff_note"]
    # and the warehouse's fulfillment order ships the substitute, not the lamp
    [fo] = shop.emulator.fulfillment_orders_of(order)
    by_line = {li["line_item_id"]: li["quantity"] for li in fo.line_items}
    line_ids = {li["sku"]: li["id"] for li in shop.emulator.order(order).line_items}
    assert by_line[line_ids["LAMP"]] == 0
    assert by_line[line_ids["LAMP-XL"]] == 1


def test_the_edit_is_announced_as_an_order_update(
    shop: RunningShopify, connector: ShopifyAdmin, order: str
) -> None:
    before = len(shop.emulator.webhooks.waiting)
    assert connector.send(_swap(shop, order)).accepted
    queued = shop.emulator.webhooks.waiting[before:]
    assert [w.topic for w in queued] == ["orders/updated"]
    body = json.loads(queued[0].body)
    skus = {li["sku"]: li["current_quantity"] for li in body["line_items"]}
    assert skus == {"LAMP": 0, "DESK": 1, "LAMP-XL": 1}


def test_a_retried_swap_is_answered_from_the_order_and_not_made_twice(
    shop: RunningShopify, connector: ShopifyAdmin, order: str
) -> None:
    assert connector.send(_swap(shop, order)).accepted
    sent = len(shop.emulator.requests)
    # when the same command comes again (its answer was lost)
    again = connector.send(_swap(shop, order))
    # then Shopify's order says the swap is made: nothing else is sent
    assert again.accepted, again.message
    assert again.facts["already_done"] is True
    assert _roots(shop)[sent:] == ["order"]
    assert len(shop.emulator.committed_edits) == 1
    assert _lines(shop, order)["LAMP-XL"] == (1, 1)


def test_a_substitute_no_variant_has_is_refused(
    shop: RunningShopify, connector: ShopifyAdmin, order: str
) -> None:
    answer = connector.send(_swap(shop, order, substitute="NO-SUCH"))
    assert not answer.accepted
    assert "no product variant has the sku 'NO-SUCH'" in str(answer.message)
    assert shop.emulator.committed_edits == []


def test_a_line_the_order_does_not_have_is_refused(
    shop: RunningShopify, connector: ShopifyAdmin, order: str
) -> None:
    answer = connector.send(_swap(shop, order, sku="CHAIR"))
    assert not answer.accepted
    assert answer.facts["code"] == "line_not_found"


def test_a_fulfilled_line_is_refused_with_shopifys_message(
    shop: RunningShopify, connector: ShopifyAdmin, order: str
) -> None:
    shop.emulator.fulfil(order)
    answer = connector.send(_swap(shop, order))
    assert not answer.accepted
    assert "orderEditSetQuantity" in str(answer.message)
    assert "fulfilled" in str(answer.message)
    assert shop.emulator.committed_edits == []
    assert _lines(shop, order)["LAMP"] == (1, 0)


@pytest.mark.parametrize("how", ["cancelled", "archived"])
def test_a_cancelled_or_archived_order_cannot_be_edited(
    shop: RunningShopify, connector: ShopifyAdmin, order: str, how: str
) -> None:
    if how == "cancelled":
        shop.emulator.order(order).cancelled_at = "2026-01-01T00:00:00Z"
    else:
        shop.emulator.close_order(order)
    answer = connector.send(_swap(shop, order))
    assert not answer.accepted
    assert f"{'cancelled' if how == 'cancelled' else 'archived'} order cannot be edited" in str(
        answer.message
    )


def test_the_substitute_already_on_the_order_gets_the_quantity(
    shop: RunningShopify, connector: ShopifyAdmin
) -> None:
    shop.emulator.add_variant("LAMP-XL", "139.00")
    order = shop.emulator.add_order(
        paid="397.00", lines=[("LAMP", 2, "129.00"), ("LAMP-XL", 1, "139.00")]
    )
    answer = connector.send(_swap(shop, order, qty=2))
    assert answer.accepted, answer.message
    assert _lines(shop, order) == {"LAMP": (0, 0), "LAMP-XL": (3, 3)}
    assert "orderEditAddVariant" not in _roots(shop)
