"""Vendor payloads (the shared conformance corpus) become the exact canonical events expected."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from recoverydesk.connectors.normalize import PROVIDERS, Normalized, normalize
from recoverydesk.domain.errors import InvalidEvent, NotFound
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.intake import tracking_only

VENDORS = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "vendors"
ROOT = Path(__file__).resolve().parents[2]
COVERED = {
    "shopify": "shopify",
    "stripe": "stripe",
    "adyen": "adyen",
    "woocommerce": "woocommerce",
    "aftership": "aftership",
    "easypost": "easypost",
}

# file -> [(type, id, order ref, expected data subset)], or ("skip", words of the reason),
# or ("error", words of the InvalidEvent message)
E = tuple[str, str, str, dict[str, Any]]
EXPECTED: dict[str, list[E] | tuple[str, str]] = {
    # --- Shopify (order ref: the Shopify order id)
    "shopify/api-fulfillment-cancelled.json": [
        (
            "order.updated",
            "shopify:fulfillment-1069019879-cancelled",
            "450789469",
            {"fulfillment_status": "cancelled", "carrier": "UPS"},
        )
    ],
    "shopify/api-fulfillment-event-create.json": [
        (
            "fulfillment.shipped",
            "shopify:fulfillment_event-944956394",
            "450789469",
            {"status": "in_transit"},
        )
    ],
    "shopify/api-fulfillment-event.json": [
        (
            "fulfillment.packed",
            "shopify:fulfillment_event-12584341209251",
            "2776493818019",
            {"status": "label_printed"},
        )
    ],
    "shopify/api-fulfillment-order-cancel.json": ("skip", "replacement fulfillment order"),
    "shopify/api-fulfillment-order-cancellation-rejected.json": [
        (
            "stopship.rejected",
            "shopify:fulfillment_order-1046000802-cancellation_rejected",
            "450789469",
            {"fulfillment_order_id": "1046000802"},
        )
    ],
    "shopify/api-fulfillment-order-cancellation-request.json": (
        "skip",
        "cancellation request is on its way",
    ),
    "shopify/api-fulfillment-order-hold.json": [
        (
            "hold.placed",
            "shopify:fulfillment_order-1046000782-hold-2025-07-02T11:22:27-05:00",
            "450789469",
            {
                "hold_type": "inventory",
                "reason": "inventory_out_of_stock",
                "lines": [{"sku": "variant-49148385", "qty": 1}],
            },
        )
    ],
    "shopify/api-fulfillment-order-release-hold.json": ("skip", "hold_released topic"),
    "shopify/api-fulfillment-orders-list.json": ("skip", "normal progress"),
    "shopify/api-fulfillment-pending.json": [
        (
            "fulfillment.released",
            "shopify:fulfillment-255858046-pending",
            "450789469",
            {"tracking": "1Z2345"},
        )
    ],
    "shopify/api-fulfillment-update-tracking.json": [
        (
            "fulfillment.shipped",
            "shopify:fulfillment-1069019869-success",
            "450789469",
            {"tracking": "1Z001985YW99744790", "carrier": "UPS"},
        )
    ],
    "shopify/api-order-2025-07.json": [
        (
            "order.placed",
            "shopify:order-450789469-placed",
            "450789469",
            {"financial_status": "partially_refunded"},
        )
    ],
    "shopify/api-order-authorized.json": [
        (
            "order.placed",
            "shopify:order-450789469-placed",
            "450789469",
            {"financial_status": "authorized"},
        )
    ],
    "shopify/api-order-cancelled.json": [
        ("order.cancelled", "shopify:order-450789469-cancelled", "450789469", {"reason": "other"})
    ],
    "shopify/api-order-risk-cancel.json": [
        (
            "hold.placed",
            "shopify:risk-284138680",
            "450789469",
            {"hold_type": "fraud", "recommendation": "cancel"},
        )
    ],
    "shopify/api-payments-dispute-2025-07.json": [
        (
            "dispute.opened",
            "shopify:dispute-598735659",
            "625362839",
            {"amount": "11.50", "reason": "fraudulent", "due_by": "2099-12-29T19:00:00-05:00"},
        )
    ],
    "shopify/api-payments-dispute-chargeback.json": ("skip", "already won"),
    "shopify/api-refund-create-restock-return.json": [
        (
            "payment.refunded",
            "shopify:transaction-1068278526",
            "450789469",
            {
                "amount": "41.94",
                "refund_id": "1068278526",
                "shopify_refund_id": "929361472",
                "reason": "wrong size",
            },
        )
    ],
    "shopify/api-refund.json": [
        (
            "payment.refunded",
            "shopify:transaction-179259969",
            "450789469",
            {
                "amount": "209.00",
                "refund_id": "179259969",
                "lines": [{"sku": "IPOD2008BLACK", "qty": 1}, {"sku": "IPOD2008GREEN", "qty": 1}],
            },
        )
    ],
    "shopify/api-transaction-authorization.json": [
        ("payment.authorized", "shopify:transaction-389404469", "450789469", {"amount": "409.94"})
    ],
    "shopify/api-transaction-void.json": [
        ("payment.voided", "shopify:transaction-1068278518", "450789469", {"amount": "0.00"})
    ],
    "shopify/api-transactions-list-refund.json": [
        (
            "payment.refunded",
            "shopify:transaction-179259969",
            "450789469",
            {"amount": "209.00", "refund_id": "179259969"},
        ),
        ("payment.authorized", "shopify:transaction-389404469", "450789469", {"amount": "598.94"}),
        ("payment.captured", "shopify:transaction-801038806", "450789469", {"amount": "250.94"}),
    ],
    # --- Stripe (order ref: metadata.order_ref …, else the payment intent / charge id)
    "stripe/djstripe-charge.json": [
        (
            "payment.captured",
            "psp:stripe:pi_fakefakefakefakefake0001:captured",
            "pi_fakefakefakefakefake0001",
            {"amount": "20.00", "currency": "USD"},
        )
    ],
    "stripe/djstripe-dispute-funds-reinstated-full.json": [
        (
            "dispute.opened",
            "psp:stripe:dp_1JAyTwJSZQVUcJYgPqasUEn1:opened",
            "pi_1JAyTwJSZQVUcJYgBbsz0NuH",
            {"amount": "10.00", "reason": "fraudulent"},
        )
    ],
    "stripe/djstripe-dispute-needs-response.json": [
        (
            "dispute.opened",
            "psp:stripe:dp_1JAyTwJSZQVUcJYgPqasUEn1:opened",
            "pi_1JAyTwJSZQVUcJYgBbsz0NuH",
            {"amount": "10.00", "due_by": "2021-07-17T23:59:59+00:00"},
        )
    ],
    "stripe/djstripe-payment-intent.json": [
        (
            "payment.captured",
            "psp:stripe:pi_fakefakefakefakefake0001:captured",
            "pi_fakefakefakefakefake0001",
            {"amount": "20.00"},
        )
    ],
    "stripe/event-data-charge-refunded-partial.json": [
        (
            "payment.refunded",
            "psp:stripe:re_3LQOJoKXBGcbgpbZ10i9Mg75",
            "pi_3LQOJoKXBGcbgpbZ1Jej1QhS",
            {"amount": "5.00", "refund_id": "re_3LQOJoKXBGcbgpbZ10i9Mg75"},
        )
    ],
    "stripe/object-charge.json": [
        (
            "payment.authorized",
            "psp:stripe:ch_1PgafuB7WZ01zgkWXYmPNZs8:authorized",
            "ch_1PgafuB7WZ01zgkWXYmPNZs8",
            {"amount": "1.00"},
        )
    ],
    "stripe/object-dispute.json": [
        (
            "dispute.opened",
            "psp:stripe:dp_1Pgc71B7WZ01zgkWMevJiAUx:opened",
            "ch_1PgafuB7WZ01zgkWXYmPNZs8",
            {
                "amount": "10.00",
                "reason": "general",
                "inquiry": True,
                "due_by": "2024-08-14T23:59:59+00:00",
            },
        )
    ],
    "stripe/object-event.json": ("skip", "plan.created"),
    "stripe/object-payment-intent.json": [
        (
            "payment.failed",
            "psp:stripe:pi_1PgafyB7WZ01zgkWSjxsAJo3:failed:last",
            "pi_1PgafyB7WZ01zgkWSjxsAJo3",
            {"amount": "10.99", "reason": "idempotency_error"},
        )
    ],
    "stripe/object-radar-early-fraud-warning.json": [
        (
            "hold.placed",
            "psp:stripe:issfr_1Pgc79B7WZ01zgkWxwDzEIPX",
            "ch_1234",
            {"hold_type": "fraud"},
        )
    ],
    "stripe/object-refund.json": [
        (
            "payment.refunded",
            "psp:stripe:re_1Pgc72B7WZ01zgkWqPvrRrPE",
            "ch_1PgafuB7WZ01zgkWXYmPNZs8",
            {"amount": "1.00", "refund_id": "re_1Pgc72B7WZ01zgkWqPvrRrPE"},
        )
    ],
    "stripe/object-review.json": [
        (
            "hold.placed",
            "psp:stripe:prv_1Pgc79B7WZ01zgkWT6khp5C3:opened",
            "ch_1PgafuB7WZ01zgkWXYmPNZs8",
            {"hold_type": "fraud"},
        )
    ],
    # --- Adyen (order ref: merchantReference, else the original PSP reference)
    "adyen/api-authorise-refused-cvc.json": ("skip", "answers the caller's own request"),
    "adyen/api-authorise-refused-expiry.json": ("skip", "answers the caller's own request"),
    "adyen/balanceplatform-dispute-created.json": ("skip", "Balance Platform"),
    "adyen/hmac-vector-item-backslash.json": [
        (
            "payment.authorized",
            "psp:adyen:T7FD4VM4D3RZNN82:AUTHORISATION:true",
            "\\\\slashes are fun",
            {"amount": "10.00", "currency": "EUR"},
        )
    ],
    "adyen/hmac-vector-item-colon.json": [
        (
            "payment.authorized",
            "psp:adyen:M8NB66SBZSGLNK82:AUTHORISATION:true",
            ":slashes are fun",
            {"amount": "10.00"},
        )
    ],
    "adyen/notification-authorisation-true.json": [
        (
            "payment.authorized",
            "psp:adyen:123456789:AUTHORISATION:true",
            "8313842560770001",
            {"amount": "101.00", "currency": "EUR"},
        )
    ],
    "adyen/notification-cancellation-true.json": [
        (
            "payment.voided",
            "psp:adyen:8412534564722331:CANCELLATION:true",
            "8313547924770610",
            {"amount": "5.00"},
        )
    ],
    "adyen/notification-capture-false.json": [
        (
            "payment.failed",
            "psp:adyen:PSP_REFERENCE:CAPTURE:false",
            "00000001",
            {
                "amount": "236.23",
                "currency": "USD",
                "operation": "capture",
                "reason": "Insufficient balance on payment",
            },
        )
    ],
    "adyen/notification-chargeback.json": [
        (
            "dispute.opened",
            "psp:adyen:9915555555555555:CHARGEBACK:true",
            "XXXXXXXXXX",
            {
                "amount": "10.00",
                "reason": "Other Fraud-Card Absent Environment",
                "reason_code": "10.4",
            },
        )
    ],
    "adyen/notification-offer-closed.json": [
        (
            "payment.failed",
            "psp:adyen:8532565401975321:OFFER_CLOSED:true",
            "000000275",
            {"amount": "272.11"},
        )
    ],
    "adyen/notification-refund-false.json": ("skip", "refused refund"),
    "adyen/notification-refund-true.json": [
        (
            "payment.refunded",
            "psp:adyen:PSP_REFERENCE:REFUND:true",
            "payment-2017-1-17-11-refund",
            {"amount": "15.00", "refund_id": "PSP_REFERENCE"},
        )
    ],
    # --- WooCommerce (order ref: the order number); no topic header here
    "woocommerce/order-created-processing.json": [
        (
            "order.updated",
            "woocommerce:order-727-updated-2017-03-22T19:28:08+00:00",
            "727",
            {"status": "processing"},
        )
    ],
    "woocommerce/order-refund-created.json": ("error", "names no order"),
    "woocommerce/order-updated-completed.json": [
        ("fulfillment.shipped", "woocommerce:order-727-completed", "727", {"status": "completed"})
    ],
    "woocommerce/orders-list.json": [
        ("order.updated", "woocommerce:order-727-updated-2017-03-22T19:28:08+00:00", "727", {}),
        ("fulfillment.shipped", "woocommerce:order-723-completed", "723", {}),
        (
            "payment.refunded",
            "woocommerce:refund-726",
            "723",
            {"amount": "10.00", "refund_id": "726"},
        ),
        (
            "payment.refunded",
            "woocommerce:refund-724",
            "723",
            {"amount": "9.00", "refund_id": "724"},
        ),
    ],
    # --- AfterShip (order ref: order_id / order_number, else the tracking number as a stand-in;
    # ids end with the envelope's event_id, else the latest checkpoint's time)
    "aftership/api-error-401.json": ("error", "API error (401"),
    "aftership/api-tracking-exception-shipment-lost.json": [
        (
            "delivery.exception",
            "carrier:aftership:5b7658cec7c33c0e007de3c5:Exception_013:2018-07-25T10:10:00+09:00",
            "111111111111",
            {"kind": "lost", "tracking": "111111111111"},
        )
    ],
    "aftership/api-tracking-update-exception.json": [
        (
            "fulfillment.delivered",
            "carrier:aftership:5b74f4958776db0e00b6f5ed:Delivered_001:2018-08-01T17:19:47",
            "1111111111111",
            {"tracking": "1111111111111"},
        )
    ],
    "aftership/api-trackings-list-exception-expired.json": [
        (
            "fulfillment.delivered",
            "carrier:aftership:5b74f4958776db0e00b6f5ed:Delivered_001:2018-08-01T13:19:47-04:00",
            "1111111111111",
            {},
        ),
        (
            "delivery.exception",
            "carrier:aftership:5b0516676a810a1400eb5c1c:Expired_001",
            "2222222222222",
            {"kind": "delay"},
        ),
        (
            "delivery.exception",
            "carrier:aftership:5b04e2cbd560281400b70284:Expired_001",
            "1231231231231",
            {"kind": "delay"},
        ),
    ],
    # --- EasyPost (order ref: the tracking code as a stand-in)
    "easypost/event-retrieve-tracker-created.json": ("skip", "carries no Tracker"),
    "easypost/tracker-retrieve.json": ("skip", "pre_transit"),
    "easypost/webhook-event-tracker-updated.json": [
        (
            "fulfillment.shipped",
            "carrier:easypost:trk_1:in_transit",
            "1",
            {"tracking": "1", "carrier": "FedEx"},
        )
    ],
}
SOURCES = {
    "shopify": "shopify",
    "stripe": "psp",
    "adyen": "psp",
    "woocommerce": "woocommerce",
    "aftership": "carrier",
    "easypost": "carrier",
}


def _load(name: str) -> Any:
    return json.loads((VENDORS / name).read_text(encoding="utf-8"))


def test_every_fixture_of_a_covered_vendor_has_an_expectation() -> None:
    # given the corpus folders of the vendors covered
    files = {f"{p.parent.name}/{p.name}" for v in COVERED for p in (VENDORS / v).glob("*.json")}
    # then each file is listed below, and nothing listed is missing from the corpus
    assert files == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_becomes_the_expected_events(name: str) -> None:
    # given a vendor payload from the corpus
    vendor = name.split("/", 1)[0]
    expected = EXPECTED[name]
    payload = _load(name)
    if isinstance(expected, tuple) and expected[0] == "error":
        # when it is normalized, then it is rejected with a clear message
        with pytest.raises(InvalidEvent, match=expected[1].replace("(", r"\(")):
            normalize(COVERED[vendor], payload)
        return
    # when it is normalized
    result = normalize(COVERED[vendor], payload)
    if isinstance(expected, tuple):
        # then it is explicitly no order exception, with the reason
        assert result.events == []
        assert result.not_an_exception is not None
        assert expected[1] in result.not_an_exception
        return
    # then it becomes exactly these events, each valid canonical
    assert result.not_an_exception is None
    got = [(e["type"], e["id"], e["order"]["ref"]) for e in result.events]
    assert got == [(t, i, r) for t, i, r, _ in expected]
    for item, (_, _, _, data) in zip(result.events, expected, strict=True):
        assert item["source"] == SOURCES[vendor]
        assert {k: item["data"].get(k) for k in data} == data
        parsed = parse_event(item)
        assert parsed.id == item["id"]


def test_shopify_order_carries_its_facts_and_name() -> None:
    # given a Shopify order body
    payload = _load("shopify/api-order-authorized.json")
    # when normalized
    (placed,) = normalize("shopify", payload).events
    # then the order facts travel with it, the name kept among the ids
    order = placed["order"]
    assert order["value"] == "409.94"
    assert order["currency"] == "USD"
    assert order["ids"] == {
        "shopify_order_id": "450789469",
        "shopify_name": "#1001",
        "shopify_number": "1001",
    }
    assert [ln["sku"] for ln in order["lines"]] == ["IPOD2008GREEN", "IPOD2008RED", "IPOD2008BLACK"]
    assert order["customer"] == {"id": "207119551", "email": "bob.norman@hostmail.com"}


def test_shopify_topic_header_decides_what_an_ambiguous_body_means() -> None:
    # given a fulfillment order body that is only "open"
    payload = _load("shopify/api-fulfillment-order-release-hold.json")
    # when the topic says its hold was released
    result = normalize(
        "shopify", payload, headers={"X-Shopify-Topic": "fulfillment_orders/hold_released"}
    )
    # then it is a released hold
    assert [e["type"] for e in result.events] == ["hold.released"]
    # and an updated order (topic) is an update, not a placement
    order = _load("shopify/api-order-2025-07.json")["order"]
    updated = normalize("shopify", order, headers={"x-shopify-topic": "orders/updated"}).events
    assert [e["type"] for e in updated] == ["order.updated"]


def test_woocommerce_topic_created_places_the_order() -> None:
    # given the order body of an order.created delivery
    payload = _load("woocommerce/order-created-processing.json")
    # when normalized with its topic header
    result = normalize("woocommerce", payload, headers={"x-wc-webhook-topic": "order.created"})
    # then the order is placed, with its facts
    (placed,) = result.events
    assert placed["type"] == "order.placed"
    assert placed["id"] == "woocommerce:order-727-created"
    assert placed["order"]["value"] == "29.35"
    assert placed["order"]["lines"] == [
        {"sku": "product-93", "qty": 2, "price": "3"},
        {"sku": "Bar3", "qty": 1, "price": "12"},
    ]
    assert placed["occurred_at"] == "2017-03-22T19:28:02+00:00"


def test_the_same_fact_through_two_payloads_has_one_id() -> None:
    # given a refund reported by the refund webhook and by the transaction list
    by_refund = normalize("shopify", _load("shopify/api-refund.json")).events[0]["id"]
    by_list = normalize("shopify", _load("shopify/api-transactions-list-refund.json")).events[0][
        "id"
    ]
    # and a Stripe capture reported on the charge and on its payment intent
    charge = normalize("stripe", _load("stripe/djstripe-charge.json")).events[0]["id"]
    intent = normalize("stripe", _load("stripe/djstripe-payment-intent.json")).events[0]["id"]
    # then each fact has a single id (the desk stores it once)
    assert by_refund == by_list
    assert charge == intent


def test_stripe_refund_names_the_desk_intent_and_order_from_metadata() -> None:
    # given a refund the desk asked for, in a refund.created event (minor units, JPY has none)
    refund = {
        **_load("stripe/object-refund.json"),
        "amount": 1500,
        "currency": "jpy",
        "metadata": {"order_ref": "1001", "idempotency_key": "rd:acme:case-7:refund:1500"},
    }
    envelope = {
        "object": "event",
        "id": "evt_1",
        "type": "refund.created",
        "created": 1700000000,
        "data": {"object": refund},
    }
    # when normalized
    (item,) = normalize("stripe", envelope).events
    # then the intent, order and amount are read right
    assert item["order"]["ref"] == "1001"
    assert item["data"]["intent"] == "rd:acme:case-7:refund:1500"
    assert item["data"]["amount"] == "1500"
    assert item["data"]["currency"] == "JPY"
    assert item["occurred_at"] == "2023-11-14T22:13:20+00:00"


def test_adyen_refund_under_the_desk_key_goes_to_intent() -> None:
    # given a refund notification whose merchantReference is the desk's intent key
    payload = _load("adyen/notification-refund-true.json")
    item = payload["notificationItems"][0]["NotificationRequestItem"]
    item["merchantReference"] = "rd:acme:case-7:refund:15"
    # when normalized
    (refund,) = normalize("adyen", payload).events
    # then the key is the intent and the original payment stands in as order ref
    assert refund["data"]["intent"] == "rd:acme:case-7:refund:15"
    assert refund["order"]["ref"] == "ORIGINAL_PSP"


def test_a_carrier_event_naming_no_order_says_its_ref_is_only_a_tracking_number() -> None:
    # given an EasyPost tracker and an AfterShip tracking that name no order
    tracker = _load("easypost/webhook-event-tracker-updated.json")
    lost = _load("aftership/api-tracking-exception-shipment-lost.json")
    # when normalized
    (by_easypost,) = normalize("easypost", tracker).events
    (by_aftership,) = normalize("aftership", lost).events
    # then the ref is the tracking number, and ids.tracking_number repeats it: only a stand-in
    assert by_easypost["order"] == {
        "ref": "1",
        "ids": {"tracking_number": "1", "easypost_tracker": "trk_1"},
    }
    assert by_aftership["order"] == {
        "ref": "111111111111",
        "ids": {
            "tracking_number": "111111111111",
            "aftership_tracking": "5b7658cec7c33c0e007de3c5",
        },
    }
    assert tracking_only(parse_event(by_easypost)) == "1"
    assert tracking_only(parse_event(by_aftership)) == "111111111111"


def test_an_aftership_tracking_with_an_order_number_names_its_order() -> None:
    # given an AfterShip tracking created with the order's number
    lost = _load("aftership/api-tracking-exception-shipment-lost.json")
    lost["data"]["tracking"]["order_number"] = "#1001"
    # when normalized
    (item,) = normalize("aftership", lost).events
    # then the order number is the ref, and the tracking number is only kept among the ids
    assert item["order"]["ref"] == "#1001"
    assert item["order"]["ids"]["tracking_number"] == "111111111111"
    assert tracking_only(parse_event(item)) is None


def test_unknown_provider_is_not_found() -> None:
    # when an unknown provider is asked for, then it is NotFound with the stable code
    with pytest.raises(NotFound) as caught:
        normalize("paypal", {})
    assert caught.value.code == "unknown_provider"
    assert {
        "shopify",
        "stripe",
        "adyen",
        "woocommerce",
        "aftership",
        "easypost",
        "wms",
    } <= PROVIDERS


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
@pytest.mark.parametrize("payload", [None, "text", 7, [], {}, {"id": None, "object": 3}, [1, 2]])
def test_garbage_is_invalid_event_never_a_crash(provider: str, payload: Any) -> None:
    # given a payload that is not what the vendor sends
    # when normalized, then it is rejected as InvalidEvent or explicitly no exception
    try:
        result = normalize(provider, payload)
    except InvalidEvent as error:
        message = error.message
        result = None
    if result is None:
        assert message
        return
    assert isinstance(result, Normalized)
    assert result.events == []
    assert result.not_an_exception


def test_wms_events_are_canonical_and_must_say_wms() -> None:
    # given a generic 3PL posting a canonical event
    ack = {
        "id": "wms:ack-1",
        "type": "stopship.acknowledged",
        "occurred_at": "2026-11-20T14:03:11Z",
        "order": {"ref": "1001"},
    }
    # when normalized, then its source is wms
    assert normalize("wms", ack).events[0]["source"] == "wms"
    # and a warehouse cannot speak for a PSP
    with pytest.raises(InvalidEvent, match="source must be 'wms'"):
        normalize("wms", {**ack, "source": "psp"})


def test_cli_prints_the_events_of_a_vendor_file() -> None:
    # given a Shopify refund file
    exe = Path(sys.executable).parent / "recoverydesk"
    file = VENDORS / "shopify" / "api-refund.json"
    # when the CLI normalizes it
    done = subprocess.run(
        [str(exe), "normalize", "shopify", str(file)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    # then it prints one canonical JSON line
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    assert [(e["type"], e["id"]) for e in lines] == [
        ("payment.refunded", "shopify:transaction-179259969")
    ]


def test_cli_says_why_a_payload_is_no_exception_and_fails_on_a_bad_file(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "recoverydesk"
    # given a won dispute, when normalized, then the reason is printed
    won = VENDORS / "shopify" / "api-payments-dispute-chargeback.json"
    done = subprocess.run(
        [str(exe), "normalize", "shopify", str(won)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert done.stdout.startswith("not an order exception: dispute 1052608616 is already won")
    # given a file that is not JSON, then exit 1 with one line
    bad = tmp_path / "bad.json"
    bad.write_text("{nope", encoding="utf-8")
    done = subprocess.run(
        [str(exe), "normalize", "shopify", str(bad)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "not a JSON payload" in done.stderr
    # given a JSON file that is no Shopify payload, then exit 1 with one line
    bad.write_text('{"hello": 1}', encoding="utf-8")
    done = subprocess.run(
        [str(exe), "normalize", "shopify", str(bad)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "shopify payload" in done.stderr


def test_a_fact_the_payload_does_not_date_is_dated_when_the_desk_received_it() -> None:
    # given a Shopify order risk (it carries no time of its own)
    payload = json.loads((VENDORS / "shopify" / "api-order-risk-cancel.json").read_text())
    received = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    # when it is normalised with the moment the desk received it
    (event,) = normalize("shopify", payload, received_at=received).events
    # then the hold is dated by the desk's clock, not the wall clock of the machine
    assert event["type"] == "hold.placed"
    assert event["occurred_at"] == received.isoformat()
