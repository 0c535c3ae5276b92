"""The Shopify Admin connector over real HTTP, against the Shopify emulator on loopback.

The connector speaks Admin GraphQL (``X-Shopify-Access-Token``, ``/admin/api/{v}/graphql.json``);
the emulator (``sandbox.shopify_emulator``) keeps the shop's orders, fulfillment orders, holds,
cancellation requests and refunds, and answers with Shopify's shapes (``userErrors``, top-level
``errors``, ``THROTTLED`` with ``extensions.cost.throttleStatus``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import httpx
import pytest

from recoverydesk.bootstrap import CONNECTORS
from recoverydesk.connectors.shopify_admin import HOLD_PREFIX, ShopifyAdmin
from recoverydesk.sandbox.shopify_emulator import (
    TEST_TOKEN,
    RunningShopify,
    running_shopify_emulator,
)
from recoverydesk.services.ports import OutsideCommand, OutsideUnavailable


@pytest.fixture
def shop() -> Iterator[RunningShopify]:
    with running_shopify_emulator() as running:
        yield running


@pytest.fixture
def connector() -> Iterator[ShopifyAdmin]:
    shopify = ShopifyAdmin(timeout=5.0)
    yield shopify
    shopify.close()


def _command(
    shop: RunningShopify,
    action: str,
    order_id: str,
    key: str | None = None,
    *,
    token: str = TEST_TOKEN,
    system: str = "wms",
    **params: Any,
) -> OutsideCommand:
    return OutsideCommand(
        merchant_id=1,
        order_ref=order_id,
        system=system,
        action=action,
        key=key or f"stopship:1:7:{action}:0",
        params=params,
        connection={
            "kind": "shopify_admin",
            "base_url": shop.base_url,
            "api_key": token,
            "api_version": "2026-01",
            "timeout_seconds": 2,
        },
        order_ids={"shopify_order_id": order_id, "shopify_name": f"#{order_id}"},
    )


def test_registered_in_the_composition_root() -> None:
    assert isinstance(CONNECTORS["shopify_admin"], ShopifyAdmin)


def test_hold_then_release_every_open_fulfillment_order(
    shop: RunningShopify, connector: ShopifyAdmin
) -> None:
    order = shop.emulator.add_order(fulfillment_orders=2)

    held = connector.send(
        _command(shop, "wms_hold", order, "k-hold", reason="incorrect_address", notes="check it")
    )

    assert held.accepted, held.message
    assert len(held.facts["held"]) == 2
    fos = shop.emulator.fulfillment_orders_of(order)
    assert [fo.status for fo in fos] == ["ON_HOLD", "ON_HOLD"]
    hold = fos[0].holds[0]
    assert hold["reason"] == "INCORRECT_ADDRESS"
    assert str(hold["handle"]).startswith(HOLD_PREFIX)
    assert "k-hold" in str(hold["reasonNotes"])
    assert held.reference == hold["id"]
    headers_sent = shop.emulator.requests[0]
    assert "order(id: $id)" in headers_sent["query"]

    released = connector.send(_command(shop, "release_hold", order, "k-release"))

    assert released.accepted, released.message
    assert len(released.facts["released"]) == 2
    assert [fo.status for fo in fos] == ["OPEN", "OPEN"]
    assert all(not fo.holds for fo in fos)


def test_release_leaves_holds_the_desk_did_not_place(
    shop: RunningShopify, connector: ShopifyAdmin
) -> None:
    order = shop.emulator.add_order()
    fo = shop.emulator.fulfillment_orders_of(order)[0]
    fo.status = "ON_HOLD"
    fo.holds.append(
        {
            "id": "gid://shopify/FulfillmentHold/1",
            "handle": "",
            "reason": "OTHER",
            "reasonNotes": "",
        }
    )
    assert connector.send(_command(shop, "wms_hold", order, "k-hold")).accepted
    assert len(fo.holds) == 2

    released = connector.send(_command(shop, "release_hold", order, "k-rel", hold_key="k-hold"))

    assert released.accepted, released.message
    assert fo.status == "ON_HOLD"
    assert [h["id"] for h in fo.holds] == ["gid://shopify/FulfillmentHold/1"]


def test_repeated_hold_and_release_are_harmless(
    shop: RunningShopify, connector: ShopifyAdmin
) -> None:
    order = shop.emulator.add_order()
    first = connector.send(_command(shop, "wms_hold", order, "k-hold"))
    sent = len(shop.emulator.requests)

    again = connector.send(_command(shop, "wms_hold", order, "k-hold"))

    assert first.accepted
    assert again.accepted
    assert again.facts["already_held"]
    assert not again.facts["held"]
    assert again.reference == first.reference
    assert len(shop.emulator.requests) == sent + 1  # only the order was read
    assert len(shop.emulator.fulfillment_orders_of(order)[0].holds) == 1

    assert connector.send(_command(shop, "release_hold", order, "k-rel")).accepted
    twice = connector.send(_command(shop, "release_hold", order, "k-rel"))
    assert twice.accepted
    assert twice.facts["already_released"]


def test_hold_refused_when_nothing_is_open(shop: RunningShopify, connector: ShopifyAdmin) -> None:
    order = shop.emulator.add_order()
    shop.emulator.fulfillment_orders_of(order)[0].status = "CLOSED"

    answer = connector.send(_command(shop, "wms_hold", order))

    assert not answer.accepted
    assert "no open fulfillment order" in (answer.message or "")


def test_cancellation_request_to_the_fulfillment_service(
    shop: RunningShopify, connector: ShopifyAdmin
) -> None:
    order = shop.emulator.add_order(request_status="ACCEPTED")
    fo = shop.emulator.fulfillment_orders_of(order)[0]

    answer = connector.send(_command(shop, "wms_cancel", order, "k-cancel", reason="customer"))

    assert answer.accepted, answer.message
    assert answer.facts["cancellation_requested"] == [fo.id]
    assert fo.request_status == "CANCELLATION_REQUESTED"
    assert "k-cancel" in fo.cancellation_messages[0]

    again = connector.send(_command(shop, "wms_cancel", order, "k-cancel"))
    assert again.accepted
    assert again.facts["already_requested"] == [fo.id]
    assert len(fo.cancellation_messages) == 1

    shop.emulator.answer_cancellation(fo.id, accept=True)
    late = connector.send(_command(shop, "wms_cancel", order, "k-cancel"))
    assert late.accepted
    assert late.facts["already_cancelled"] == [fo.id]


def test_cancellation_request_refused_when_nothing_was_accepted(
    shop: RunningShopify, connector: ShopifyAdmin
) -> None:
    order = shop.emulator.add_order(request_status="ACCEPTED", fulfillment_orders=2)
    shop.emulator.fulfillment_orders_of(order)[1].request_status = "SUBMITTED"
    fo = shop.emulator.fulfillment_orders_of(order)[0]
    shop.emulator.answer_cancellation(fo.id, accept=False)  # CANCELLATION_REJECTED

    answer = connector.send(_command(shop, "wms_cancel", order))

    assert not answer.accepted
    assert "no fulfillment order accepted" in (answer.message or "")


def test_order_cancel_and_its_repeat(shop: RunningShopify, connector: ShopifyAdmin) -> None:
    order = shop.emulator.add_order()

    answer = connector.send(
        _command(shop, "order_cancel", order, "k-oc", system="storefront", reason="customer")
    )

    assert answer.accepted, answer.message
    state = shop.emulator.order(order)
    assert state.cancelled_at is not None
    assert state.cancel_reason == "CUSTOMER"
    assert state.cancel_flags["refund"] is False
    assert state.cancel_flags["restock"] is True
    assert state.cancel_flags["notifyCustomer"] is False
    assert "k-oc" in str(state.cancel_flags["staffNote"])
    assert shop.emulator.fulfillment_orders_of(order)[0].status == "CANCELLED"

    again = connector.send(_command(shop, "order_cancel", order, "k-oc", system="storefront"))
    assert again.accepted
    assert again.facts["already_cancelled"]


def test_refund_with_the_key_and_its_repeat(shop: RunningShopify, connector: ShopifyAdmin) -> None:
    order = shop.emulator.add_order(paid="100.00")

    answer = connector.send(
        _command(
            shop, "refund", order, "k-refund", system="storefront", amount="40.00", currency="USD"
        )
    )

    assert answer.accepted, answer.message
    assert answer.facts == {"amount": "40.00", "currency": "USD"}
    refunds = shop.emulator.order(order).refunds
    assert len(refunds) == 1
    assert "k-refund" in str(refunds[0]["note"])
    assert answer.reference == refunds[0]["id"]
    sent = shop.emulator.requests[-1]
    assert "@idempotent(key: $idempotencyKey)" in sent["query"]
    assert sent["variables"]["idempotencyKey"] == "k-refund"

    again = connector.send(
        _command(
            shop, "refund", order, "k-refund", system="storefront", amount="40.00", currency="USD"
        )
    )
    assert again.accepted
    assert again.facts["already_refunded"]
    assert again.reference == answer.reference
    assert shop.emulator.order(order).refunded == Decimal("40.00")


def test_refund_beyond_what_was_paid_is_refused_with_shopifys_message(
    shop: RunningShopify, connector: ShopifyAdmin
) -> None:
    order = shop.emulator.add_order(paid="100.00")
    assert connector.send(
        _command(shop, "refund", order, "k-1", system="storefront", amount="70", currency="USD")
    ).accepted

    answer = connector.send(
        _command(shop, "refund", order, "k-2", system="storefront", amount="50", currency="USD")
    )

    assert not answer.accepted
    assert "Refund amount $50.00 is greater than net payment received $30.00" in (
        answer.message or ""
    )
    assert answer.facts["user_errors"]
    assert shop.emulator.order(order).refunded == Decimal("70")


def test_emulator_replays_an_idempotent_refund(shop: RunningShopify) -> None:
    """Shopify's own @idempotent: the same key sent twice creates one refund."""
    order = shop.emulator.add_order(paid="10.00")
    gid = f"gid://shopify/Order/{order}"
    parent = shop.emulator.order(order).transactions[0]["id"]
    document = (
        "mutation R($input: RefundInput!, $k: String!) { refundCreate(input: $input) "
        "@idempotent(key: $k) { refund { id } userErrors { field message } } }"
    )
    variables = {
        "k": "same",
        "input": {
            "orderId": gid,
            "transactions": [{"orderId": gid, "parentId": parent, "amount": "5", "kind": "REFUND"}],
        },
    }
    with httpx.Client(base_url=shop.base_url) as http:
        url = "/admin/api/2026-01/graphql.json"
        headers = {"X-Shopify-Access-Token": TEST_TOKEN}
        first = http.post(url, json={"query": document, "variables": variables}, headers=headers)
        second = http.post(url, json={"query": document, "variables": variables}, headers=headers)
    assert first.json()["data"] == second.json()["data"]
    assert len(shop.emulator.order(order).refunds) == 1


def test_address_update(shop: RunningShopify, connector: ShopifyAdmin) -> None:
    order = shop.emulator.add_order()
    address = {
        "address1": "1 Infinite Loop",
        "city": "Cupertino",
        "province_code": "CA",
        "country_code": "US",
        "zip": "95014",
    }

    answer = connector.send(
        _command(shop, "address_update", order, system="storefront", address=address)
    )

    assert answer.accepted, answer.message
    state = shop.emulator.order(order).shipping_address
    assert state["address1"] == "1 Infinite Loop"
    assert state["countryCodeV2"] == "US"
    assert answer.facts["shipping_address"]["city"] == "Cupertino"
    assert connector.send(
        _command(shop, "address_update", order, system="storefront", address=address)
    ).accepted


def test_user_errors_are_a_refusal_with_shopifys_message(
    shop: RunningShopify, connector: ShopifyAdmin
) -> None:
    order = shop.emulator.add_order()

    answer = connector.send(
        _command(shop, "address_update", order, system="storefront", country_code="USA")
    )

    assert not answer.accepted
    assert "Shipping address country is not supported" in (answer.message or "")
    assert "shippingAddress.countryCode" in (answer.message or "")


def test_unknown_order_is_refused(shop: RunningShopify, connector: ShopifyAdmin) -> None:
    answer = connector.send(_command(shop, "wms_hold", "999"))
    assert not answer.accepted
    assert "not found" in (answer.message or "")


def test_throttled_is_retried_later(shop: RunningShopify, connector: ShopifyAdmin) -> None:
    order = shop.emulator.add_order()
    shop.emulator.throttled = True

    with pytest.raises(OutsideUnavailable, match="THROTTLED") as caught:
        connector.send(_command(shop, "wms_hold", order))

    assert caught.value.code == "throttled"
    assert not shop.emulator.fulfillment_orders_of(order)[0].holds
    shop.emulator.throttled = False
    assert connector.send(_command(shop, "wms_hold", order)).accepted


@pytest.mark.parametrize("status", [429, 500, 503])
def test_429_and_5xx_are_retried_later(
    shop: RunningShopify, connector: ShopifyAdmin, status: int
) -> None:
    order = shop.emulator.add_order()
    shop.emulator.fail_next(status)

    with pytest.raises(OutsideUnavailable, match=f"HTTP {status}"):
        connector.send(_command(shop, "order_cancel", order))


def test_timeout_is_retried_later(shop: RunningShopify) -> None:
    order = shop.emulator.add_order()
    shop.emulator.delay = 0.5
    slow = ShopifyAdmin(timeout=0.1)
    command = _command(shop, "order_cancel", order)
    command = replace(command, connection={**command.connection, "timeout_seconds": 0.1})
    try:
        with pytest.raises(OutsideUnavailable, match="timed out"):
            slow.send(command)
    finally:
        slow.close()
        shop.emulator.delay = 0


def test_unreachable_shop_is_retried_later(connector: ShopifyAdmin) -> None:
    command = OutsideCommand(
        merchant_id=1,
        order_ref="1",
        system="wms",
        action="wms_hold",
        key="k",
        params={},
        connection={"kind": "shopify_admin", "base_url": "http://127.0.0.1:9", "api_key": "x"},
    )
    with pytest.raises(OutsideUnavailable):
        connector.send(command)


def test_bad_token_is_a_refusal(shop: RunningShopify, connector: ShopifyAdmin) -> None:
    order = shop.emulator.add_order()

    answer = connector.send(_command(shop, "wms_hold", order, token="shpat_wrong"))

    assert not answer.accepted
    assert "HTTP 401" in (answer.message or "")
    assert "Invalid API key or access token" in (answer.message or "")
    assert answer.facts["http_status"] == 401
    assert "shpat_wrong" not in (answer.message or "")


def test_top_level_errors_are_a_refusal(shop: RunningShopify) -> None:
    """A missing required variable: Shopify's top-level ``errors`` (HTTP 200)."""
    with httpx.Client(base_url=shop.base_url) as http:
        answer = http.post(
            "/admin/api/2026-01/graphql.json",
            json={
                "query": "mutation H($id: ID!) { fulfillmentOrderReleaseHold(id: $id) "
                "{ userErrors { message } } }",
                "variables": {},
            },
            headers={"X-Shopify-Access-Token": TEST_TOKEN},
        )
    assert answer.status_code == 200
    assert answer.json()["errors"][0]["message"].startswith("Variable $id of type ID!")


def test_unsupported_action_and_incomplete_connection(
    shop: RunningShopify, connector: ShopifyAdmin
) -> None:
    order = shop.emulator.add_order()
    assert not connector.send(_command(shop, "wms_status", order)).accepted
    command = _command(shop, "wms_hold", order)
    bare = OutsideCommand(
        merchant_id=1, order_ref=order, system="wms", action="wms_hold", key="k", params={}
    )
    answer = connector.send(bare)
    assert not answer.accepted
    assert "base_url and api_key" in (answer.message or "")
    assert command.connection["api_key"] == TEST_TOKEN
