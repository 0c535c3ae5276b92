"""The Shopify emulator's webhooks reaching a live desk over real HTTP, on SQLite and PostgreSQL.

The emulator (``sandbox.shopify_emulator``) queues the webhook Shopify sends for each change of
the shop (seeded orders, GraphQL mutations, the test helpers) and posts it, signed with the
merchant's Shopify secret, to ``/webhooks/shopify/acme`` when ``deliver_due`` is called. The desk
is checked through its API only: the order 360 (``GET /api/v1/orders/{ref}``, the ref being the
Shopify order id) and the cases of an order (``GET /api/v1/cases?order=``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from recoverydesk.persistence.tables import events
from recoverydesk.sandbox.shopify_emulator import (
    SHOP_DOMAIN,
    TEST_TOKEN,
    RunningShopify,
    running_shopify_emulator,
)
from recoverydesk.sandbox.webhook_outbox import DeliveryResult
from recoverydesk.services import merchants as admin
from tests.e2e.conftest import LiveDesk

SECRET = "shpss_emulator_webhooks"
CONFIG = f"""
merchant: acme
connectors:
  webhooks:
    shopify: {{secrets: [{SECRET}]}}
"""
GRAPHQL = "/admin/api/2026-01/graphql.json"
HOLD = """
mutation Hold($id: ID!, $fulfillmentHold: FulfillmentOrderHoldInput!) {
  fulfillmentOrderHold(id: $id, fulfillmentHold: $fulfillmentHold) {
    fulfillmentHold { id reason }
    userErrors { field message }
  }
}"""
RELEASE = """
mutation Release($id: ID!) {
  fulfillmentOrderReleaseHold(id: $id) {
    fulfillmentOrder { id status }
    userErrors { field message }
  }
}"""
CANCEL = """
mutation Cancel($orderId: ID!, $reason: OrderCancelReason!, $refund: Boolean!,
                $restock: Boolean!) {
  orderCancel(orderId: $orderId, reason: $reason, refund: $refund, restock: $restock) {
    job { id done }
    orderCancelUserErrors { field message code }
  }
}"""
REFUND = """
mutation Refund($input: RefundInput!) {
  refundCreate(input: $input) {
    refund { id totalRefundedSet { shopMoney { amount currencyCode } } }
    userErrors { field message }
  }
}"""
CANCELLATION_REQUEST = """
mutation Ask($id: ID!, $message: String) {
  fulfillmentOrderSubmitCancellationRequest(id: $id, message: $message) {
    fulfillmentOrder { id status requestStatus }
    userErrors { field message }
  }
}"""


class ManualClock:
    """The emulator's clock: real time at the start, moved on by the test (Shopify stamps its
    resources to the second, so each change of one resource gets a later second)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: int = 1) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def shop(clock: ManualClock) -> Iterator[RunningShopify]:
    with running_shopify_emulator(clock=clock) as running:
        yield running


def _merchant(live: LiveDesk, tmp_path: Path) -> httpx.Client:
    """Merchant acme with its Shopify webhook secret; an API client of one of its leads."""
    token = live.token("acme", "lead")
    path = tmp_path / "acme.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    with live.desk.uow() as uow:
        admin.apply_settings(uow, clock=live.desk.clock, name="acme", config=path)
        uow.commit()
    return live.client(token)


def _aimed(live: LiveDesk, tmp_path: Path, shop: RunningShopify) -> httpx.Client:
    api = _merchant(live, tmp_path)
    shop.emulator.webhooks.aim(live.base_url, "acme", SECRET)
    return api


def _deliver(shop: RunningShopify) -> list[str]:
    """Send what is due; every delivery must be taken. The topics sent, in order."""
    results = shop.emulator.deliver_due()
    assert all(r.ok for r in results), results
    assert not shop.emulator.webhooks.waiting
    return [r.topic for r in results]


def _graphql(shop: RunningShopify, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    with httpx.Client(base_url=shop.base_url, timeout=10) as http:
        answer = http.post(
            GRAPHQL,
            json={"query": query, "variables": variables},
            headers={"X-Shopify-Access-Token": TEST_TOKEN},
        )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert "errors" not in body, body
    data: dict[str, Any] = next(iter(body["data"].values()))
    assert not data.get("userErrors"), data
    assert not data.get("orderCancelUserErrors"), data
    return data


def _order_360(api: httpx.Client, ref: str) -> dict[str, Any]:
    answer = api.get(f"/api/v1/orders/{ref}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _cases(api: httpx.Client, ref: str) -> list[dict[str, Any]]:
    answer = api.get("/api/v1/cases", params={"order": ref})
    assert answer.status_code == 200, answer.text
    cases: list[dict[str, Any]] = answer.json()["cases"]
    return cases


def _stored(live: LiveDesk) -> int:
    with live.desk.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(events)).scalar_one())


def test_an_order_created_in_the_shop_shows_up_in_the_order_360(
    live: LiveDesk, tmp_path: Path, shop: RunningShopify, clock: ManualClock
) -> None:
    # given the shop's webhooks aimed at the desk
    api = _aimed(live, tmp_path, shop)
    # when an order is placed in the shop and its webhooks are delivered
    ref = shop.emulator.add_order(
        paid="59.90", lines=[("TEE-BLUE-M", 2, "24.95"), ("SOCKS-GREY", 1, "10.00")]
    )
    assert _deliver(shop) == ["orders/create", "order_transactions/create"]
    # then the desk knows the order by its Shopify id, with the shop's facts
    order = _order_360(api, ref)
    assert (order["ref"], order["channel"], order["currency"]) == (ref, "shopify", "USD")
    assert Decimal(order["value"]) == Decimal("59.90")
    assert {(ln["sku"], ln["qty"]) for ln in order["lines"]} == {
        ("TEE-BLUE-M", 2),
        ("SOCKS-GREY", 1),
    }
    assert order["system_ids"]["shopify_name"] == f"#{ref}"
    assert datetime.fromisoformat(order["placed_at"]) == clock.now
    assert order["customer"]["email"] == "bob.norman@mail.example.com"
    assert order["shipping_address"]["city"] == "Louisville"
    assert Decimal(order["payment"]["captured"]) == Decimal("59.90")
    assert not _cases(api, ref)
    # and each delivery carried Shopify's headers, its webhook id being the delivery id
    for sent in shop.emulator.webhooks.sent:
        assert sent.headers["X-Shopify-Webhook-Id"] == sent.delivery_id
        assert sent.headers["X-Shopify-Topic"] == sent.topic
        assert sent.headers["X-Shopify-Shop-Domain"] == SHOP_DOMAIN
        body = json.loads(sent.body)
        assert body.get("order_id", body["id"]) == int(ref)


def test_a_fraud_hold_through_the_admin_api_opens_a_fraud_case_and_its_release_closes_it(
    live: LiveDesk, tmp_path: Path, shop: RunningShopify, clock: ManualClock
) -> None:
    api = _aimed(live, tmp_path, shop)
    ref = shop.emulator.add_order()
    _deliver(shop)
    fo = shop.emulator.fulfillment_orders_of(ref)[0]
    # when an app holds the fulfillment order for fraud through the Admin GraphQL API
    clock.tick()
    hold = {"reason": "HIGH_RISK_OF_FRAUD", "reasonNotes": "Proxy IP, mismatched billing"}
    _graphql(shop, HOLD, {"id": fo.id, "fulfillmentHold": hold})
    assert _deliver(shop) == ["fulfillment_orders/placed_on_hold", "fulfillment_holds/added"]
    # then the desk has an active fraud hold and an open fraud case for the order
    cases = _cases(api, ref)
    assert [(c["category"], c["closed_at"]) for c in cases] == [("fraud_hold", None)]
    holds = _order_360(api, ref)["holds"]
    assert [(h["hold_type"], h["active"]) for h in holds] == [("fraud", True)]
    # when the hold is released
    clock.tick()
    _graphql(shop, RELEASE, {"id": fo.id})
    assert _deliver(shop) == ["fulfillment_holds/released", "fulfillment_orders/hold_released"]
    # then the hold is over and the case is no longer open
    holds = _order_360(api, ref)["holds"]
    assert [(h["hold_type"], h["active"]) for h in holds] == [("fraud", False)]
    case = _cases(api, ref)[0]
    assert case["status"] in ("resolved", "closed"), case
    assert case["outcome"] == "released", case


def test_a_cancel_through_the_graphql_api_is_seen_by_the_desk(
    live: LiveDesk, tmp_path: Path, shop: RunningShopify, clock: ManualClock
) -> None:
    api = _aimed(live, tmp_path, shop)
    ref = shop.emulator.add_order()
    _deliver(shop)
    assert _order_360(api, ref)["cancelled"] is False
    # when the order is cancelled through orderCancel
    clock.tick(30)
    order_gid = shop.emulator.order(ref).id
    variables = {"orderId": order_gid, "reason": "CUSTOMER", "refund": False, "restock": True}
    _graphql(shop, CANCEL, variables)
    assert _deliver(shop) == ["orders/cancelled"]
    # then the desk sees the whole order cancelled, when and why the shop says
    order = _order_360(api, ref)
    assert (order["cancelled"], order["fully_cancelled"]) == (True, True)
    assert order["cancel_reason"] == "customer"
    assert datetime.fromisoformat(order["cancelled_at"]) == clock.now


def test_a_refund_is_booked_once_although_shopify_reports_its_transaction_twice(
    live: LiveDesk, tmp_path: Path, shop: RunningShopify, clock: ManualClock
) -> None:
    api = _aimed(live, tmp_path, shop)
    ref = shop.emulator.add_order(paid="100.00")
    _deliver(shop)
    before = _stored(live)
    # when the shop refunds part of the order
    clock.tick()
    state = shop.emulator.order(ref)
    refund_input = {
        "orderId": state.id,
        "note": "damaged in transit",
        "transactions": [
            {"parentId": state.transactions[0]["id"], "amount": "40.00", "kind": "REFUND"}
        ],
    }
    _graphql(shop, REFUND, {"input": refund_input})
    # then refunds/create and order_transactions/create both arrive
    assert _deliver(shop) == ["refunds/create", "order_transactions/create"]
    # and the desk books one refund of 40
    payment = _order_360(api, ref)["payment"]
    assert Decimal(payment["refunded"]) == Decimal("40.00")
    assert len(payment["refunds"]) == 1
    assert _stored(live) == before + 1


def test_a_delivery_the_desk_refuses_waits_and_is_delivered_later_and_stored_once(
    live: LiveDesk, tmp_path: Path, shop: RunningShopify, clock: ManualClock
) -> None:
    api = _merchant(live, tmp_path)
    ref = shop.emulator.add_order()
    queued = [o.delivery_id for o in shop.emulator.webhooks.waiting]
    assert len(queued) == 2
    # given no desk to send to yet: nothing is sent, everything waits
    results = shop.emulator.deliver_due()
    assert [(r.status_code, r.error) for r in results] == [(None, "no desk configured")] * 2
    # when aimed with a secret the merchant does not have: the desk answers 401
    shop.emulator.webhooks.aim(live.base_url, "acme", "shpss_not_the_merchants")
    clock.tick(60)
    results = shop.emulator.deliver_due()
    assert [r.status_code for r in results] == [401, 401]
    assert [o.delivery_id for o in shop.emulator.webhooks.waiting] == queued
    assert _stored(live) == 0
    assert api.get(f"/api/v1/orders/{ref}").status_code == 404
    # when the right secret is set: the same deliveries, same ids, are taken
    shop.emulator.webhooks.aim(live.base_url, "acme", SECRET)
    clock.tick(60)
    taken = _retried(shop)
    assert [r.delivery_id for r in taken] == queued
    assert [o.attempts for o in shop.emulator.webhooks.sent] == [3, 3]
    assert _stored(live) == 2
    assert _order_360(api, ref)["ref"] == ref
    # and when Shopify sends one again (it missed the 2xx), the desk stores nothing new
    again = shop.emulator.webhooks.sent[0]
    shop.emulator.webhooks.put(again.delivery_id, again.topic, again.body, headers=again.headers)
    assert [r.delivery_id for r in _retried(shop)] == [queued[0]]
    assert _stored(live) == 2
    assert _order_360(api, ref)["event_count"] == 2


def _retried(shop: RunningShopify) -> list[DeliveryResult]:
    results = shop.emulator.deliver_due()
    assert all(r.status_code == 200 for r in results), results
    return results


def test_risk_and_payment_failure_helpers_open_their_cases(
    live: LiveDesk, tmp_path: Path, shop: RunningShopify, clock: ManualClock
) -> None:
    api = _aimed(live, tmp_path, shop)
    risky, declined = shop.emulator.add_order(), shop.emulator.add_order()
    _deliver(shop)
    # when Shopify flags one order high-risk and a charge on the other fails
    clock.tick()
    shop.emulator.flag_high_risk(risky)
    shop.emulator.fail_payment(declined, message="Your card was declined.")
    assert _deliver(shop) == ["orders/risk_assessment_changed", "order_transactions/create"]
    # then each opens its case
    assert [c["category"] for c in _cases(api, risky)] == ["fraud_hold"]
    assert [h["hold_type"] for h in _order_360(api, risky)["holds"]] == ["fraud"]
    assert [c["category"] for c in _cases(api, declined)] == ["payment_failed"]
    payment = _order_360(api, declined)["payment"]
    assert (payment["failures"], payment["last_failure"]) == (1, "Your card was declined.")


def test_a_rejected_cancellation_request_reaches_the_desk(
    live: LiveDesk, tmp_path: Path, shop: RunningShopify, clock: ManualClock
) -> None:
    api = _aimed(live, tmp_path, shop)
    ref = shop.emulator.add_order(request_status="ACCEPTED")
    _deliver(shop)
    fo = shop.emulator.fulfillment_orders_of(ref)[0]
    # when the merchant asks the fulfillment service to cancel (the desk waits for the answer)
    clock.tick()
    _graphql(shop, CANCELLATION_REQUEST, {"id": fo.id, "message": "Customer cancelled"})
    assert _deliver(shop) == ["fulfillment_orders/cancellation_request_submitted"]
    assert _order_360(api, ref)["evidence"]["stopship_answer"] is None
    # and the service rejects it
    clock.tick()
    shop.emulator.answer_cancellation(fo.id, accept=False, message="Already packed")
    assert _deliver(shop) == ["fulfillment_orders/cancellation_request_rejected"]
    # then the desk has the rejection on the order, with the service's reason
    assert _order_360(api, ref)["evidence"]["stopship_answer"] == "stopship.rejected"
    rejection = _event_data(live, ref, "stopship.rejected")
    assert rejection["message"] == "Already packed"


def _event_data(live: LiveDesk, ref: str, kind: str) -> dict[str, Any]:
    """The data of the one stored event of ``kind`` on order ``ref``."""
    with live.desk.engine.connect() as connection:
        rows = connection.execute(
            select(events.c.payload).where(events.c.order_ref == ref, events.c.type == kind)
        ).all()
    assert len(rows) == 1, rows
    data: dict[str, Any] = rows[0].payload["data"]
    return data


def _events_of(live: LiveDesk, ref: str) -> list[tuple[str, str]]:
    with live.desk.engine.connect() as connection:
        rows = connection.execute(
            select(events.c.event_id, events.c.type).where(events.c.order_ref == ref)
        ).all()
    return sorted((row.type, row.event_id) for row in rows)


def test_releasing_one_fulfillment_orders_hold_leaves_the_others_hold_and_case(
    live: LiveDesk, tmp_path: Path, shop: RunningShopify, clock: ManualClock
) -> None:
    # given an order split over two fulfillment orders, and a desk subscribed to Shopify's
    # per-hold topics (they name each hold; the fulfillment-order topics do not on release)
    api = _aimed(live, tmp_path, shop)
    shop.emulator.topics = {
        "orders/create",
        "order_transactions/create",
        "fulfillment_holds/added",
        "fulfillment_holds/released",
    }
    ref = shop.emulator.add_order(fulfillment_orders=2)
    _deliver(shop)
    first, second = shop.emulator.fulfillment_orders_of(ref)
    # when one is held for fraud and the other for stock
    clock.tick()
    _graphql(shop, HOLD, {"id": first.id, "fulfillmentHold": {"reason": "HIGH_RISK_OF_FRAUD"}})
    _graphql(shop, HOLD, {"id": second.id, "fulfillmentHold": {"reason": "INVENTORY_OUT_OF_STOCK"}})
    assert _deliver(shop) == ["fulfillment_holds/added"] * 2
    assert sorted(c["category"] for c in _cases(api, ref)) == ["fraud_hold", "inventory_mismatch"]
    # and the fraud hold is released
    clock.tick()
    _graphql(shop, RELEASE, {"id": first.id})
    assert _deliver(shop) == ["fulfillment_holds/released"]
    # then only the fraud hold is over: the stock hold and its case stay
    holds = {h["hold_type"]: h["active"] for h in _order_360(api, ref)["holds"]}
    assert holds == {"fraud": False, "inventory": True}
    cases = {c["category"]: c["closed_at"] is None for c in _cases(api, ref)}
    assert cases == {"fraud_hold": False, "inventory_mismatch": True}


def test_hold_release_and_hold_again_within_one_second_are_three_facts(
    live: LiveDesk, tmp_path: Path, shop: RunningShopify, clock: ManualClock
) -> None:
    # given a desk subscribed to the fulfillment-order hold topics only
    _aimed(live, tmp_path, shop)
    shop.emulator.topics = {
        "orders/create",
        "order_transactions/create",
        "fulfillment_orders/placed_on_hold",
        "fulfillment_orders/hold_released",
    }
    ref = shop.emulator.add_order()
    _deliver(shop)
    before = _stored(live)
    fo = shop.emulator.fulfillment_orders_of(ref)[0]
    # when the fulfillment order is held, released and held again, all stamped the same second
    clock.tick()
    for query, variables in (
        (HOLD, {"id": fo.id, "fulfillmentHold": {"reason": "OTHER"}}),
        (RELEASE, {"id": fo.id}),
        (HOLD, {"id": fo.id, "fulfillmentHold": {"reason": "OTHER"}}),
    ):
        _graphql(shop, query, variables)
    assert _deliver(shop) == [
        "fulfillment_orders/placed_on_hold",
        "fulfillment_orders/hold_released",
        "fulfillment_orders/placed_on_hold",
    ]
    # then the desk stored three facts, not one hold and a lost second
    assert _stored(live) == before + 3
    kinds = [kind for kind, _ in _events_of(live, ref)]
    assert kinds.count("hold.placed") == 2
    assert kinds.count("hold.released") == 1
    # and Shopify resending one of them stores nothing new
    again = shop.emulator.webhooks.sent[-1]
    shop.emulator.webhooks.put(again.delivery_id, again.topic, again.body, headers=again.headers)
    _deliver(shop)
    assert _stored(live) == before + 3


def test_a_risk_assessment_from_an_app_and_a_low_one_from_shopify(
    live: LiveDesk, tmp_path: Path, shop: RunningShopify, clock: ManualClock
) -> None:
    api = _aimed(live, tmp_path, shop)
    ref = shop.emulator.add_order()
    _deliver(shop)
    # when Shopify rates the order low risk: no case
    clock.tick()
    shop.emulator.assess_risk(ref, "LOW")
    assert _deliver(shop) == ["orders/risk_assessment_changed"]
    assert _cases(api, ref) == []
    # when a fraud app rates it medium: a fraud hold, naming the app
    clock.tick()
    shop.emulator.assess_risk(ref, "MEDIUM", provider_id=7, provider_title="FraudGuard")
    assert _deliver(shop) == ["orders/risk_assessment_changed"]
    assert [c["category"] for c in _cases(api, ref)] == ["fraud_hold"]
    (hold,) = _order_360(api, ref)["holds"]
    assert (hold["hold_type"], hold["active"]) == ("fraud", True)
    assert "FraudGuard" in hold["reason"]
