"""Zendesk, Freshdesk, Magento and Amazon payloads (the shared corpus) become the exact events."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from recoverydesk.connectors.normalize import PROVIDERS, Normalized, normalize
from recoverydesk.domain.errors import InvalidEvent
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.intake import stand_in

VENDORS = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "vendors"
ROOT = Path(__file__).resolve().parents[2]
COVERED = {  # corpus folder -> provider
    "zendesk": "zendesk",
    "freshdesk": "freshdesk",
    "magento": "magento",
    "amazon-spapi": "amazon",
}
SOURCES = {
    "zendesk": "helpdesk",
    "freshdesk": "helpdesk",
    "magento": "magento",
    "amazon-spapi": "amazon",
}

# file -> [(type, id, order ref, expected data subset)], or ("skip", words of the reason),
# or ("error", words of the InvalidEvent message)
E = tuple[str, str, str, dict[str, Any]]
EXPECTED: dict[str, list[E] | tuple[str, str]] = {
    # --- Zendesk (order ref: external_id / order tag / subject, else zendesk-ticket-<id>)
    "zendesk/api-ticket-show-new.json": [
        (
            "ticket.created",
            "helpdesk:zendesk:ticket-8867",
            "zendesk-ticket-8867",
            {"ticket_id": "8867", "status": "new", "ticket_type": "question", "escalated": None},
        )
    ],
    "zendesk/api-ticket-show-incident.json": [
        (
            "ticket.created",
            "helpdesk:zendesk:ticket-1",
            "zendesk-ticket-1",
            {"ticket_id": "1", "ticket_type": "incident", "priority": "high", "escalated": True},
        )
    ],
    "zendesk/api-ticket-update-response.json": [
        (
            "ticket.created",
            "helpdesk:zendesk:ticket-8868",
            "zendesk-ticket-8868",
            {"ticket_id": "8868", "subject": "TESTDATA"},
        )
    ],
    # the requester is also the assignee (an agent's sample ticket): no comment is a customer's
    "zendesk/api-ticket-audits.json": [
        (
            "ticket.created",
            "helpdesk:zendesk:ticket-1",
            "zendesk-ticket-1",
            {"ticket_id": "1", "ticket_type": "incident", "status": "open"},
        )
    ],
    # --- Freshdesk (order ref: cf_order… field / order tag / subject, else freshdesk-ticket-<id>)
    "freshdesk/api-v2-ticket-open-escalated.json": [
        (
            "ticket.created",
            "helpdesk:freshdesk:ticket-1",
            "freshdesk-ticket-1",
            {"ticket_id": "1", "status": "open", "escalated": True, "priority": "low"},
        )
    ],
    "freshdesk/api-v2-ticket-resolved.json": [
        (
            "ticket.created",
            "helpdesk:freshdesk:ticket-1",
            "freshdesk-ticket-1",
            {"ticket_id": "1", "status": "resolved", "priority": "high"},
        )
    ],
    "freshdesk/api-v2-ticket-conversations.json": (
        "skip",
        "conversation 1 is a private note; conversation 2 is an agent's reply",
    ),
    # --- Magento (order ref: the order entity id)
    "magento/rest-order-new-pending.json": [
        ("order.placed", "magento:order-3-placed", "3", {"state": "new", "status": "pending"})
    ],
    "magento/rest-invoice.json": [
        (
            "payment.captured",
            "magento:invoice-3",
            "3",
            {"amount": "165", "currency": "USD", "invoice_number": "000000003"},
        )
    ],
    "magento/rest-order-refund-request.json": ("error", "POST /V1/order/{orderId}/refund request"),
    "magento/rest-order-ship-request.json": ("error", "POST /V1/order/{orderId}/ship request"),
    # --- Amazon SP-API (order ref: the Amazon order id)
    "amazon-spapi/getOrder-200-example.json": [
        (
            "order.placed",
            "amazon:order-902-3159896-1390916-placed",
            "902-3159896-1390916",
            {"status": "Pending"},
        )
    ],
    "amazon-spapi/getOrders-200-example.json": [
        (
            "order.placed",
            "amazon:order-902-3159896-1390916-placed",
            "902-3159896-1390916",
            {"status": "Pending"},
        )
    ],
    "amazon-spapi/getOrders-200-sandbox-unshipped.json": [
        (
            "order.placed",
            "amazon:order-902-1845936-5435065-placed",
            "902-1845936-5435065",
            {"status": "Unshipped"},
        ),
        (
            "order.updated",
            "amazon:order-902-1845936-5435065-unshipped",
            "902-1845936-5435065",
            {"status": "Unshipped"},
        ),
        (
            "order.placed",
            "amazon:order-902-8745147-1934268-placed",
            "902-8745147-1934268",
            {},
        ),
        (
            "order.updated",
            "amazon:order-902-8745147-1934268-unshipped",
            "902-8745147-1934268",
            {},
        ),
    ],
    "amazon-spapi/getOrder-2026-01-01-sandbox-unshipped-all-included.json": [
        (
            "order.placed",
            "amazon:order-171-9876543-2109876-placed",
            "171-9876543-2109876",
            {"status": "UNSHIPPED"},
        ),
        (
            "order.updated",
            "amazon:order-171-9876543-2109876-unshipped",
            "171-9876543-2109876",
            {"status": "UNSHIPPED"},
        ),
    ],
    "amazon-spapi/searchOrders-2026-01-01-sandbox.json": [
        (
            "order.placed",
            "amazon:order-171-2345678-9012345-placed",
            "171-2345678-9012345",
            {},
        ),
        (
            "order.updated",
            "amazon:order-171-2345678-9012345-unshipped",
            "171-2345678-9012345",
            {},
        ),
    ],
    "amazon-spapi/getOrderItems-200-buyer-requested-cancel.json": [
        (
            "cancel.requested",
            "amazon:order-903-1671087-0812628-buyer-cancel",
            "903-1671087-0812628",
            {
                "requested_by": "customer",
                "reason": "Found cheaper somewhere else.",
                "lines": [{"sku": "CBA_OTF_1", "qty": 1}, {"sku": "CBA_OTF_5", "qty": 2}],
            },
        )
    ],
    "amazon-spapi/getOrders-400-sandbox-error.json": (
        "error",
        "SP-API error response (InvalidInput: Invalid Input)",
    ),
    "amazon-spapi/notification-OrderChangeNotification.json": [
        (
            "cancel.requested",
            "amazon:order-903-8868176-2219830-buyer-cancel",
            "903-8868176-2219830",
            {
                "requested_by": "customer",
                "reason": "Buyer Requested Cancel",
                "lines": [{"sku": "SellerSKUID1", "qty": 10}],
            },
        )
    ],
    "amazon-spapi/notification-FBAOutboundShipmentStatusNotification.json": [
        (
            "fulfillment.released",
            "amazon:fba-shipment-DrLqQwqvb-created",
            "113-2646096-4474645",
            {"shipment_id": "DrLqQwqvb", "shipment_status": "Created"},
        )
    ],
    # the example's order and shipment status (PROCESSED) is no documented value: only the
    # returned item is a fact
    "amazon-spapi/notification-FulfillmentOrderStatusNotification.json": [
        (
            "return.received",
            "amazon:mcf-SFOID2345-return-SELLERSKU9345-2020-07-13T19:42:04.284000+00:00",
            "SFOID2345",
            {"lines": [{"sku": "SELLERSKU9345", "qty": 12}]},
        )
    ],
    "amazon-spapi/notification-ShipmentTrackingMilestoneChangedNotification.json": [
        (
            "fulfillment.delivered",
            "amazon:tracking-AFTN987654321-DELIVERED",
            "AFTN987654321",
            {"tracking": "AFTN987654321", "status": "DELIVERED", "sub_status": "PORCH"},
        )
    ],
}


def _load(name: str) -> Any:
    return json.loads((VENDORS / name).read_text(encoding="utf-8"))


def _valid(result: Normalized) -> list[dict[str, Any]]:
    for item in result.events:
        assert parse_event(item).id == item["id"]
    return result.events


def test_every_fixture_of_these_vendors_has_an_expectation() -> None:
    # given the corpus folders of the four vendors
    files = {f"{p.parent.name}/{p.name}" for v in COVERED for p in (VENDORS / v).glob("*.json")}
    # then each file is listed, and nothing listed is missing from the corpus
    assert files == set(EXPECTED)
    assert set(COVERED.values()) <= PROVIDERS


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_becomes_the_expected_events(name: str) -> None:
    # given a vendor payload from the corpus
    folder = name.split("/", 1)[0]
    expected = EXPECTED[name]
    payload = _load(name)
    if isinstance(expected, tuple) and expected[0] == "error":
        # when it is normalized, then it is rejected with a clear message
        with pytest.raises(InvalidEvent) as caught:
            normalize(COVERED[folder], payload)
        assert expected[1] in caught.value.message
        return
    # when it is normalized
    result = normalize(COVERED[folder], payload)
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
        assert item["source"] == SOURCES[folder]
        assert {k: item["data"].get(k) for k in data} == data
    _valid(result)


# --- Zendesk


def test_zendesk_public_comment_of_the_requester_is_a_customer_reply() -> None:
    # given the audits of a ticket whose assignee is an agent, not the requester
    payload = _load("zendesk/api-ticket-audits.json")
    create = payload["audits"][0]["events"]
    next(e for e in create if e.get("field_name") == "assignee_id")["value"] = "555"
    # when normalized
    events = _valid(normalize("zendesk", payload))
    # then the requester's later public comment is a reply; the private note and the comments
    # of another user are not, and the creation audit's comment is the ticket itself
    assert [(e["type"], e["id"]) for e in events] == [
        ("ticket.created", "helpdesk:zendesk:ticket-1"),
        ("customer.replied", "helpdesk:zendesk:comment-21078987"),
    ]
    reply = events[1]
    assert reply["data"]["ticket_id"] == "1"
    assert reply["data"]["message"].startswith("This is the latest comment")
    assert reply["occurred_at"] == "2012-09-06T20:17:10+00:00"


@pytest.mark.parametrize(
    ("change", "ref"),
    [
        ({"external_id": "1001"}, "1001"),
        ({"tags": ["vip", "order-A-77"]}, "A-77"),
        ({"subject": "Where is my order #1042?"}, "1042"),
        ({"subject": "I want to change order 2 shirts"}, "zendesk-ticket-8867"),
    ],
)
def test_zendesk_ticket_names_its_order(change: dict[str, Any], ref: str) -> None:
    # given a ticket that names its order in one of the supported places
    payload = _load("zendesk/api-ticket-show-new.json")
    payload["ticket"].update(change)
    # when normalized, then that is the order reference and the ticket id is kept
    (created,) = _valid(normalize("zendesk", payload))
    assert created["order"]["ref"] == ref
    assert created["order"]["ids"] == {"zendesk_ticket": "8867"}


# --- Freshdesk


def test_freshdesk_incoming_public_conversation_is_a_customer_reply() -> None:
    # given the customer's own message in a ticket's conversations
    payload = _load("freshdesk/api-v2-ticket-conversations.json")
    reply = copy.deepcopy(payload[1])
    reply.update({"id": 3, "incoming": True, "body_text": "Please cancel it"})
    # when normalized
    events = _valid(normalize("freshdesk", [*payload, reply]))
    # then only that message is a reply
    assert [(e["type"], e["id"], e["order"]["ref"]) for e in events] == [
        ("customer.replied", "helpdesk:freshdesk:conversation-3", "freshdesk-ticket-1")
    ]
    assert events[0]["data"]["message"] == "Please cancel it"


def test_freshdesk_ticket_order_field_and_requester() -> None:
    # given a ticket with an order number custom field
    payload = _load("freshdesk/api-v2-ticket-open-escalated.json")
    payload["custom_fields"]["cf_order_number"] = "1001"
    # when normalized
    (created,) = _valid(normalize("freshdesk", payload))
    # then the field is the order and the requester is the customer
    assert created["order"]["ref"] == "1001"
    assert created["order"]["customer"] == {"id": "6012691534", "email": "dummyname@example.com"}
    # and a spam ticket is no order fact
    spam = normalize("freshdesk", {**payload, "spam": True})
    assert spam.events == []
    assert spam.not_an_exception == "ticket 1 is marked spam"


# --- Magento


def test_magento_order_carries_its_facts() -> None:
    # given an order object
    (placed,) = _valid(normalize("magento", _load("magento/rest-order-new-pending.json")))
    # then the facts travel with it, the order number kept among the ids
    order = placed["order"]
    assert order["value"] == "165"
    assert order["currency"] == "USD"
    assert order["placed_at"] == "2017-08-21T22:22:19+00:00"
    assert order["ids"] == {"magento_increment_id": "000000003"}
    assert order["customer"] == {"id": "3", "email": "jdoe@example.com"}
    assert order["lines"] == [{"sku": "WS12-M-Orange", "qty": 1, "price": "22"}]
    assert order["shipping_address"]["postcode"] == "10577"


def test_magento_credit_memo_shipment_and_order_states() -> None:
    # given a refunded credit memo and a shipment of order 3
    memo = {
        "entity_id": 7,
        "order_id": 3,
        "increment_id": "000000007",
        "state": 2,
        "grand_total": 22,
        "adjustment_positive": 0,
        "order_currency_code": "USD",
        "created_at": "2017-08-22 10:00:00",
        "items": [{"sku": "WS12-M-Orange", "qty": 1, "order_item_id": 3}],
    }
    shipment = {
        "entity_id": 4,
        "order_id": 3,
        "created_at": "2017-08-21 23:00:00",
        "items": [{"sku": "WS12-M-Orange", "qty": 1}],
        "tracks": [{"track_number": "1Y-9876543210", "carrier_code": "ups"}],
    }
    # when normalized, then they are the refund and the shipment
    (refund,) = _valid(normalize("magento", memo))
    assert (refund["type"], refund["id"], refund["order"]["ref"]) == (
        "payment.refunded",
        "magento:creditmemo-7",
        "3",
    )
    assert refund["data"]["amount"] == "22"
    assert refund["data"]["refund_id"] == "7"
    (shipped,) = _valid(normalize("magento", shipment))
    assert (shipped["type"], shipped["id"]) == ("fulfillment.shipped", "magento:shipment-4")
    assert shipped["data"]["tracking"] == "1Y-9876543210"
    assert shipped["data"]["carrier"] == "ups"
    # and a cancelled order in a search result is cancelled, an open invoice moved no money
    order = _load("magento/rest-order-new-pending.json")
    found = {"items": [{**order, "state": "canceled"}], "search_criteria": {}}
    assert [e["type"] for e in _valid(normalize("magento", found))] == ["order.cancelled"]
    unpaid = normalize("magento", {**_load("magento/rest-invoice.json"), "state": 1})
    assert unpaid.not_an_exception == "invoice 3 is open (not paid yet): no money was captured"


# --- Amazon


def test_amazon_order_read_carries_its_facts() -> None:
    # given an Orders 2026-01-01 read and a v0 read
    (placed, _) = _valid(
        normalize(
            "amazon", _load("amazon-spapi/getOrder-2026-01-01-sandbox-unshipped-all-included.json")
        )
    )
    order = placed["order"]
    assert order["value"] == "299.90"
    assert order["currency"] == "BRL"
    assert order["ship_by"] == "2024-12-27T23:59:59+00:00"
    assert order["promised_by"] == "2024-12-31T23:59:59+00:00"
    assert order["lines"] == [{"sku": "ECHO-DOT-4-BR-PRETO", "price": "299.90", "qty": 1}]
    assert order["ids"]["amazon_seller_order_id"] == "BR-CONSUMER-ORDER-2024-003"
    (v0,) = _valid(normalize("amazon", _load("amazon-spapi/getOrder-200-example.json")))
    assert v0["order"]["customer"] == {"email": "user@example.com"}
    assert v0["order"]["ship_by"] == "2017-01-25T19:49:35+00:00"
    # and an Amazon-fulfilled order is of the marketplace fulfilment type
    afn = _load("amazon-spapi/getOrder-200-example.json")
    afn["payload"].update(FulfillmentChannel="AFN", OrderStatus="Shipped")
    events = _valid(normalize("amazon", afn))
    assert [e["type"] for e in events] == ["order.placed", "fulfillment.shipped"]
    assert events[1]["order"]["fulfillment_type"] == "marketplace"


def test_amazon_status_change_notification_dedupes_with_the_read() -> None:
    # given an order status change notification saying the order was cancelled
    payload = _load("amazon-spapi/notification-OrderChangeNotification.json")
    change = payload["Payload"]["OrderChangeNotification"]
    change["OrderChangeType"] = "OrderStatusChange"
    change["Summary"]["OrderStatus"] = "Canceled"
    (cancelled,) = _valid(normalize("amazon", payload))
    # and a read of the same order in that status
    read = _load("amazon-spapi/getOrder-200-example.json")
    read["payload"].update(AmazonOrderId="903-8868176-2219830", OrderStatus="Canceled")
    by_read = _valid(normalize("amazon", read))[1]
    # then both are the same cancellation
    assert cancelled["type"] == by_read["type"] == "order.cancelled"
    assert cancelled["id"] == by_read["id"] == "amazon:order-903-8868176-2219830-canceled"


def test_amazon_tracking_milestone_stands_under_its_tracking_number() -> None:
    # given a tracking milestone, which names only the parcel's tracking number
    tracking = _load("amazon-spapi/notification-ShipmentTrackingMilestoneChangedNotification.json")
    # when normalized
    (delivered,) = _valid(normalize("amazon", tracking))
    # then the ref is the number, and ids.tracking_number repeats it: only a stand-in, which
    # intake moves to the order that shipped under that number
    assert delivered["order"] == {
        "ref": "AFTN987654321",
        "ids": {"tracking_number": "AFTN987654321"},
    }
    assert stand_in(parse_event(delivered)) == ("tracking_number", "AFTN987654321")


def test_amazon_notifications_that_are_no_order_fact() -> None:
    # given a tracking milestone before the carrier has it, and another notification type
    tracking = _load("amazon-spapi/notification-ShipmentTrackingMilestoneChangedNotification.json")
    detail = tracking["payload"]["shipmentTrackingMilestoneChangedNotification"]["trackingDetail"]
    detail["latestMilestone"]["status"] = {"code": "ORDER_PREPARING"}
    # then each is explicitly no exception
    assert "has not left yet" in (normalize("amazon", tracking).not_an_exception or "")
    other = {"NotificationType": "ANY_OFFER_CHANGED", "EventTime": "2020-01-11T00:09:53Z"}
    assert "ANY_OFFER_CHANGED" in (normalize("amazon", other).not_an_exception or "")
    # and a MCF shipment that shipped is a shipment with its tracking
    mcf = _load("amazon-spapi/notification-FulfillmentOrderStatusNotification.json")
    note = mcf["Payload"]["FulfillmentOrderStatusNotification"]
    note["FulfillmentShipment"]["FulfillmentShipmentStatus"] = "SHIPPED"
    del note["FulfillmentReturnItem"]
    (shipped,) = _valid(normalize("amazon", mcf))
    assert shipped["type"] == "fulfillment.shipped"
    assert shipped["data"]["tracking"] == "1Z84456456573405"
    assert shipped["data"]["trackings"] == ["1Z84456456573405", "1Z885647654573405"]
    assert shipped["order"]["fulfillment_type"] == "3pl"


@pytest.mark.parametrize("provider", sorted(COVERED.values()))
@pytest.mark.parametrize("payload", [[1], "x", 7, {}, {"ticket": 1}, {"payload": []}])
def test_garbage_is_invalid_or_explicitly_no_exception(provider: str, payload: Any) -> None:
    # given a payload that is not what the vendor sends
    # when normalized, then it is rejected as InvalidEvent or explicitly no exception
    message = ""
    try:
        result: Normalized | None = normalize(provider, payload)
    except InvalidEvent as error:
        message = error.message
        result = None
    if result is None:
        assert message
        return
    assert result.events == []
    assert result.not_an_exception


# --- CLI


@pytest.mark.parametrize(
    ("provider", "name", "first"),
    [
        ("zendesk", "zendesk/api-ticket-show-incident.json", "helpdesk:zendesk:ticket-1"),
        ("freshdesk", "freshdesk/api-v2-ticket-resolved.json", "helpdesk:freshdesk:ticket-1"),
        ("magento", "magento/rest-invoice.json", "magento:invoice-3"),
        (
            "amazon",
            "amazon-spapi/notification-OrderChangeNotification.json",
            "amazon:order-903-8868176-2219830-buyer-cancel",
        ),
    ],
)
def test_cli_prints_the_events_of_a_vendor_file(provider: str, name: str, first: str) -> None:
    # given a vendor file
    exe = Path(sys.executable).parent / "recoverydesk"
    # when the CLI normalizes it
    done = subprocess.run(
        [str(exe), "normalize", provider, str(VENDORS / name)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    # then it prints the canonical JSON lines
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    assert [e["id"] for e in lines] == [first]
    for item in lines:
        parse_event(item)


def test_cli_fails_with_one_line_on_a_request_body() -> None:
    # given a Magento request body (what a client sends, not what Magento reports)
    exe = Path(sys.executable).parent / "recoverydesk"
    file = VENDORS / "magento" / "rest-order-refund-request.json"
    done = subprocess.run(
        [str(exe), "normalize", "magento", str(file)], capture_output=True, text=True, check=False
    )
    # then exit 1 with one clear line
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "refund request body" in done.stderr
