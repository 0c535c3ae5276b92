"""Shopify webhooks as Shopify really sends them: risk assessments, per-hold topics, event ids
that tell same-second facts apart, the fulfillment service's own words, real SKUs on hold lines,
and both delivery-id headers when signing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from recoverydesk.connectors.normalize import normalize
from recoverydesk.connectors.signatures import sign, verify
from recoverydesk.domain.casebook import fold
from recoverydesk.domain.cases import Category, Outcome
from recoverydesk.services.canonical import parse_event

VENDORS = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "vendors"
AT = "2026-03-02T10:15:30+00:00"
ORDER = 450789469


def _load(name: str) -> Any:
    return json.loads((VENDORS / "shopify" / name).read_text(encoding="utf-8"))


def _headers(topic: str, event_id: str | None = None, **more: str) -> dict[str, str]:
    headers = {"X-Shopify-Topic": topic, **more}
    if event_id is not None:
        headers["X-Shopify-Event-Id"] = event_id
    return headers


def _fo(
    foid: int,
    *,
    status: str = "on_hold",
    holds: list[dict[str, Any]] | None = None,
    lines: list[dict[str, Any]] | None = None,
    updated_at: str = AT,
) -> dict[str, Any]:
    """A fulfillment order as fulfillment_orders/* webhooks carry it (REST shape)."""
    return {
        "id": foid,
        "order_id": ORDER,
        "status": status,
        "request_status": "unsubmitted",
        "created_at": AT,
        "updated_at": updated_at,
        "line_items": lines
        if lines is not None
        else [
            {
                "id": foid + 1,
                "fulfillment_order_id": foid,
                "line_item_id": 518995019,
                "variant_id": 49148385,
                "quantity": 1,
                "fulfillable_quantity": 1,
            }
        ],
        "fulfillment_holds": holds or [],
    }


def _hold(hid: int, reason: str, notes: str | None = None) -> dict[str, Any]:
    return {"id": hid, "reason": reason, "reason_notes": notes, "held_by_requesting_app": True}


def _one(payload: Any, headers: dict[str, str]) -> dict[str, Any]:
    result = normalize("shopify", payload, headers=headers)
    assert result.not_an_exception is None, result.not_an_exception
    (item,) = result.events
    parse_event(item)
    return item


# --- 1. risk ----------------------------------------------------------------------------------


def _assessment(level: str, **fields: Any) -> dict[str, Any]:
    """The orders/risk_assessment_changed body (OrderRiskAssessment, REST-cased)."""
    return {
        "provider_id": None,
        "provider_title": None,
        "risk_level": level,
        "created_at": AT,
        "order_id": ORDER,
        "admin_graphql_api_order_id": f"gid://shopify/Order/{ORDER}",
        **fields,
    }


@pytest.mark.parametrize("level", ["HIGH", "high", "MEDIUM", "medium"])
def test_a_high_or_medium_risk_assessment_places_a_fraud_hold(level: str) -> None:
    # given Shopify's orders/risk_assessment_changed webhook with a high or medium risk level
    headers = _headers("orders/risk_assessment_changed", "ev-risk-1")
    # when normalized
    item = _one(_assessment(level), headers)
    # then the order is held for fraud, with the level and who assessed it
    assert (item["type"], item["order"]["ref"]) == ("hold.placed", str(ORDER))
    assert item["data"]["hold_type"] == "fraud"
    assert item["data"]["risk_level"] == level.lower()
    assert "Shopify" in item["data"]["reason"]
    assert item["occurred_at"] == AT
    assert item["id"] == f"shopify:risk_assessment-{ORDER}-ev-risk-1"


def test_a_risk_assessment_shaped_like_shopifys_sample_is_read_from_the_graphql_order_id() -> None:
    # given the body as Shopify's own sample shows it: no order_id, no time, a provider app
    body = _assessment("high", order_id=None, created_at=None, provider_id=7, provider_title="Acme")
    headers = _headers("orders/risk_assessment_changed", "ev-2")
    headers["X-Shopify-Triggered-At"] = "2026-03-02T10:16:00.123456Z"
    # when normalized
    item = _one(body, headers)
    # then the order is the number in the GraphQL id, and the time is when Shopify fired it
    assert item["order"]["ref"] == str(ORDER)
    assert item["occurred_at"].startswith("2026-03-02T10:16:00.123456")
    assert "Acme" in item["data"]["reason"]


@pytest.mark.parametrize("level", ["LOW", "none", "PENDING"])
def test_a_low_none_or_pending_risk_assessment_is_explicitly_no_exception(level: str) -> None:
    # given a favourable (or not yet known) risk assessment
    result = normalize(
        "shopify", _assessment(level), headers=_headers("orders/risk_assessment_changed", "e")
    )
    # then nothing is held, and the reason says why
    assert result.events == []
    assert result.not_an_exception is not None
    assert level.lower() in result.not_an_exception


def test_a_risk_assessment_redelivered_keeps_its_id_and_a_new_one_gets_a_new_id() -> None:
    body = _assessment("high")
    first = _one(body, _headers("orders/risk_assessment_changed", "ev-a"))
    again = _one(body, _headers("orders/risk_assessment_changed", "ev-a"))
    other = _one(body, _headers("orders/risk_assessment_changed", "ev-b"))
    assert first["id"] == again["id"] != other["id"]
    # and without the header, the id is still the same for the same body
    bare = [normalize("shopify", body).events[0]["id"] for _ in range(2)]
    assert bare[0] == bare[1]


def test_a_bare_order_risk_under_an_orders_topic_is_a_fraud_hold() -> None:
    # given the OrderRisk resource, unwrapped, under an orders/* topic
    risk = _load("api-order-risk-cancel.json")["risk"]
    # when normalized
    item = _one(risk, _headers("orders/risk", "ev-3"))
    # then it is the fraud hold the wrapped resource gives, not a broken order
    assert (item["type"], item["id"]) == ("hold.placed", "shopify:risk-284138680")
    assert item["data"]["hold_type"] == "fraud"


# --- 2. a release names the hold it releases -----------------------------------------------------


def test_a_per_hold_release_names_the_hold_type_from_its_reason() -> None:
    # given fulfillment_holds/released for a fraud hold on one fulfillment order
    body = {
        "fulfillment_hold": _hold(9001, "high_risk_of_fraud"),
        "fulfillment_order": _fo(1046000782, status="open"),
    }
    # when normalized
    item = _one(body, _headers("fulfillment_holds/released", "ev-rel"))
    # then it releases a fraud hold, named by the hold's own id
    assert item["type"] == "hold.released"
    assert item["data"]["hold_type"] == "fraud"
    assert item["data"]["fulfillment_order_id"] == "1046000782"
    assert item["id"] == "shopify:fulfillment_hold-9001-released"


def test_a_fulfillment_order_release_names_the_hold_type_when_the_body_names_the_hold() -> None:
    body = {
        "fulfillment_order": _fo(1046000782, status="open"),
        "fulfillment_hold": {
            "id": "gid://shopify/FulfillmentHold/77",
            "reason": "AWAITING_PAYMENT",
        },
    }
    item = _one(body, _headers("fulfillment_orders/hold_released", "ev-9"))
    assert item["data"]["hold_type"] == "payment"
    assert item["id"] == "shopify:fulfillment_hold-77-released"


def test_releasing_one_fulfillment_orders_hold_keeps_the_other_hold_and_its_case() -> None:
    # given two fulfillment orders of one order, one held for fraud, the other for stock
    fraud, stock = _hold(1, "high_risk_of_fraud"), _hold(2, "inventory_out_of_stock")
    payloads = [
        ({"fulfillment_hold": fraud, "fulfillment_order": _fo(10, holds=[fraud])}, "added"),
        ({"fulfillment_hold": stock, "fulfillment_order": _fo(20, holds=[stock])}, "added"),
        # when the fraud hold is released (a second later)
        (
            {
                "fulfillment_hold": fraud,
                "fulfillment_order": _fo(10, status="open", updated_at="2026-03-02T10:15:31Z"),
            },
            "released",
        ),
    ]
    events = [
        parse_event(item)
        for body, kind in payloads
        for item in normalize("shopify", body, headers=_headers(f"fulfillment_holds/{kind}")).events
    ]
    order, episodes = fold(str(ORDER), events)
    # then only the fraud hold is over, and only the fraud case is closed
    assert order.active_holds == ["inventory"]
    outcomes = {ep.category: ep.outcome for ep in episodes}
    assert outcomes == {Category.FRAUD_HOLD: Outcome.RELEASED, Category.INVENTORY_MISMATCH: None}


# --- 3. event ids that tell same-second facts apart ----------------------------------------------


def test_hold_release_hold_in_the_same_second_are_three_events() -> None:
    # given a hold, its release and a new hold, all stamped the same second
    first = {"fulfillment_order": _fo(10), "created_fulfillment_hold": _hold(1, "other")}
    release = {"fulfillment_order": _fo(10, status="open")}
    second = {"fulfillment_order": _fo(10), "created_fulfillment_hold": _hold(2, "other")}
    # when each is normalized with the headers of its own delivery
    ids = [
        _one(first, _headers("fulfillment_orders/placed_on_hold", "ev-1"))["id"],
        _one(release, _headers("fulfillment_orders/hold_released", "ev-2"))["id"],
        _one(second, _headers("fulfillment_orders/placed_on_hold", "ev-3"))["id"],
    ]
    # then they are three facts: holds by their own ids, the release by Shopify's event id
    assert ids == [
        "shopify:fulfillment_hold-1-placed",
        "shopify:fulfillment_order-10-released-ev-2",
        "shopify:fulfillment_hold-2-placed",
    ]


def test_a_hold_and_its_per_hold_webhook_are_one_fact() -> None:
    # given the same hold reported by placed_on_hold and by fulfillment_holds/added
    hold = _hold(5, "incorrect_address")
    by_order = {"fulfillment_order": _fo(10, holds=[hold]), "created_fulfillment_hold": hold}
    by_hold = {"fulfillment_order": _fo(10, holds=[hold]), "fulfillment_hold": hold}
    a = _one(by_order, _headers("fulfillment_orders/placed_on_hold", "ev-1"))
    b = _one(by_hold, _headers("fulfillment_holds/added", "ev-2"))
    # then it has one id (the desk stores it once) and the address hold type
    assert a["id"] == b["id"] == "shopify:fulfillment_hold-5-placed"
    assert a["data"]["hold_type"] == b["data"]["hold_type"] == "address"


def test_a_hold_without_an_id_is_named_by_shopifys_event_id() -> None:
    body = {"fulfillment_order": _fo(10, holds=[{"reason": "other"}])}
    one = _one(body, _headers("fulfillment_orders/placed_on_hold", "ev-x"))["id"]
    two = _one(body, _headers("fulfillment_orders/placed_on_hold", "ev-y"))["id"]
    assert one == "shopify:fulfillment_order-10-hold-ev-x"
    assert one != two
    # a redelivery (same body, same headers) keeps the id
    assert _one(body, _headers("fulfillment_orders/placed_on_hold", "ev-x"))["id"] == one


def test_two_order_updates_in_the_same_second_are_two_events() -> None:
    order = _load("api-order-2025-07.json")["order"]
    one = _one(order, _headers("orders/updated", "ev-u1"))["id"]
    two = _one(order, _headers("orders/updated", "ev-u2"))["id"]
    again = _one(order, _headers("orders/updated", "ev-u1"))["id"]
    assert one != two
    assert one == again


def test_an_event_id_header_unfit_for_an_id_is_digested() -> None:
    body = {"fulfillment_order": _fo(10, status="open")}
    odd = "x" * 500 + " / weird"
    item = _one(body, _headers("fulfillment_orders/hold_released", odd))
    assert len(item["id"]) <= 200
    assert item["id"] == _one(body, _headers("fulfillment_orders/hold_released", odd))["id"]


# --- 4. the fulfillment service's reason for a rejection -----------------------------------------


def test_a_rejected_cancellation_keeps_the_fulfillment_services_message() -> None:
    # given the merchant asked "Customer cancelled" and the service answered "Already packed"
    fo = _fo(10, status="in_progress")
    fo["request_status"] = "cancellation_rejected"
    fo["merchant_requests"] = [{"message": "Customer cancelled", "kind": "cancellation_request"}]
    body = {"fulfillment_order": fo, "message": "Already packed"}
    # when normalized
    item = _one(body, _headers("fulfillment_orders/cancellation_request_rejected", "e"))
    # then the kept message is the service's reason, not the merchant's own request
    assert item["type"] == "stopship.rejected"
    assert item["data"]["message"] == "Already packed"
    # and without a reason from the service, the merchant's text is still not taken for one
    del body["message"]
    item = _one(body, _headers("fulfillment_orders/cancellation_request_rejected", "e"))
    assert item["data"]["message"] != "Customer cancelled"


def test_a_rejection_read_from_shopifys_minimal_body() -> None:
    # given Shopify's sample body: only id, status and request status, and the reason
    body = {
        "fulfillment_order": {
            "id": "gid://shopify/FulfillmentOrder/1",
            "order_id": ORDER,
            "status": "in_progress",
            "request_status": "cancellation_rejected",
        },
        "message": "Order has already been shipped.",
    }
    item = _one(body, _headers("fulfillment_orders/cancellation_request_rejected", "e"))
    assert item["data"]["message"] == "Order has already been shipped."
    assert item["data"]["fulfillment_order_id"] == "1"


# --- 5. hold lines carry the real SKU ---------------------------------------------------------


def test_hold_lines_use_the_real_sku_when_the_payload_has_it() -> None:
    lines = [
        {"id": 1, "line_item_id": 11, "variant_id": 111, "sku": "TEE-BLUE-M", "quantity": 2},
        {"id": 2, "line_item_id": 22, "variant_id": 222, "quantity": 1},
        {"id": 3, "line_item_id": 33, "quantity": 1},
    ]
    body = {"fulfillment_order": _fo(10, lines=lines, holds=[_hold(1, "other")])}
    item = _one(body, _headers("fulfillment_orders/placed_on_hold", "e"))
    assert item["data"]["lines"] == [
        {"sku": "TEE-BLUE-M", "qty": 2},
        {"sku": "variant-222", "qty": 1},
        {"sku": "variant-33", "qty": 1},  # the order line's own fallback (its line item id)
    ]


# --- 6. signing and verifying Shopify's two ids -----------------------------------------------

NOW = datetime(2026, 3, 2, 10, 15, 30, tzinfo=UTC)
BODY = b'{"id":820982911946154508,"cancel_reason":"customer"}'


def test_signing_sets_both_the_webhook_id_and_the_event_id() -> None:
    headers = sign("shopify", body=BODY, secret="s", now=NOW, delivery_id="d-1")
    assert headers["X-Shopify-Webhook-Id"] == "d-1"
    assert headers["X-Shopify-Event-Id"] == "d-1"
    delivery = verify("shopify", headers=headers, body=BODY, secrets=["s"], now=NOW)
    assert delivery.delivery_id == "d-1"


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ({"X-Shopify-Webhook-Id": "wh-1", "X-Shopify-Event-Id": "ev-1"}, "wh-1"),
        ({"shopify-webhook-id": "wh-2", "shopify-event-id": "ev-2"}, "wh-2"),
        ({"X-Shopify-Event-Id": "ev-1"}, "ev-1"),
    ],
)
def test_verify_takes_the_webhook_id_as_the_delivery_id(ids: dict[str, str], expected: str) -> None:
    headers = sign("shopify", body=BODY, secret="s", now=NOW)
    headers = {k: v for k, v in headers.items() if "Id" not in k} | ids
    delivery = verify("shopify", headers=headers, body=BODY, secrets=["s"], now=NOW)
    assert delivery.delivery_id == expected
