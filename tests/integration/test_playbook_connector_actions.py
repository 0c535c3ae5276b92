"""The connector actions the playbooks send through the outbox, over real HTTP against the
Stripe and 3PL emulators on loopback: retrying a declined payment and checking (and capturing)
an authorization at Stripe; inventory, label reprints, split shipments, ship-method changes and
reshipments at the warehouse. Every write goes under the command's key, and the same command
sent again (a retried job) is answered the same without a second effect."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from recoverydesk.connectors.outbound import OutsideRouter
from recoverydesk.connectors.stripe_payments import StripePayments
from recoverydesk.connectors.threepl import ThreePLConnector
from recoverydesk.sandbox.recorders import AcceptingOutside
from recoverydesk.sandbox.stripe_emulator import (
    TEST_KEY,
    Decline,
    RunningEmulator,
    running_stripe_emulator,
)
from recoverydesk.sandbox.threepl_emulator import RunningEmulator as RunningWarehouse
from recoverydesk.sandbox.threepl_emulator import ThreePLEmulator, serve_emulator
from recoverydesk.sandbox.webhook_outbox import WebhookOutbox
from recoverydesk.services.clock import SimulatedClock
from recoverydesk.services.ports import OutsideCommand, OutsideUnavailable

START = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
WMS_KEY = "k"


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def clock() -> SimulatedClock:
    """Stripe's time and the desk's (one clock: hours left are read against it)."""
    return SimulatedClock(START)


@pytest.fixture
def outbox(clock: SimulatedClock) -> WebhookOutbox:
    return WebhookOutbox("stripe", clock=clock.now)


@pytest.fixture
def stripe_api(clock: SimulatedClock, outbox: WebhookOutbox) -> Iterator[RunningEmulator]:
    with running_stripe_emulator(outbox=outbox, clock=clock.now) as running:
        yield running


@pytest.fixture
def payments(clock: SimulatedClock) -> Iterator[StripePayments]:
    connector = StripePayments(timeout=5.0, connect_timeout=2.0, max_network_retries=0, clock=clock)
    yield connector
    connector.close()


@pytest.fixture
def emulator() -> ThreePLEmulator:
    return ThreePLEmulator(api_key=WMS_KEY)


@pytest.fixture
def warehouse(emulator: ThreePLEmulator) -> Iterator[RunningWarehouse]:
    with serve_emulator(emulator) as running:
        yield running


@pytest.fixture
def wms() -> Iterator[ThreePLConnector]:
    connector = ThreePLConnector(timeout=5.0)
    yield connector
    connector.close()


def _payments(
    base_url: str, action: str, key: str, *, intent: str | None = None, **params: Any
) -> OutsideCommand:
    return OutsideCommand(
        merchant_id=1,
        order_ref="1001",
        system="payments",
        action=action,
        key=key,
        params=params,
        connection={"kind": "stripe", "base_url": base_url, "api_key": TEST_KEY},
        order_ids={"stripe_payment_intent": intent} if intent else {},
    )


def _wms(base_url: str, action: str, key: str, ref: str = "1001", **params: Any) -> OutsideCommand:
    return OutsideCommand(
        merchant_id=1,
        order_ref=ref,
        system="wms",
        action=action,
        key=key,
        params=params,
        connection={"kind": "wms_rest", "base_url": base_url, "api_key": WMS_KEY},
    )


def _declined_payment(stripe_api: RunningEmulator, *, capture: bool = False) -> str:
    """A PaymentIntent whose customer's payment was declined at checkout."""
    intent = str(
        stripe_api.emulator.create_payment_intent(15000, capture=capture, confirm=False)["id"]
    )
    stripe_api.emulator.fail_payment(intent, decline_code="insufficient_funds")
    return intent


def _topics(outbox: WebhookOutbox) -> list[str]:
    return [o.topic for o in outbox.waiting]


# -- Stripe: retry_payment -----------------------------------------------------------------------


def test_a_retried_payment_is_authorized_and_stripe_reports_it_by_webhook(
    stripe_api: RunningEmulator, payments: StripePayments, outbox: WebhookOutbox
) -> None:
    # given an order whose payment (manual capture) was declined at checkout
    intent = _declined_payment(stripe_api)
    assert _topics(outbox)[-1] == "payment_intent.payment_failed"
    # when a playbook retries it
    key = "playbook:1:7:retry_payment:1"
    answer = payments.send(_payments(stripe_api.base_url, "retry_payment", key, intent=intent))
    # then the PaymentIntent was confirmed again under the command's key, with the card the
    # customer tried, and it is authorized now
    assert answer.accepted, answer.message
    assert answer.reference == intent
    assert answer.facts == {
        "status": "requires_capture",
        "paid": True,
        "authorized": True,
        "declined": False,
        "amount": "150.00",
        "currency": "USD",
    }
    assert ("POST", f"/v1/payment_intents/{intent}/confirm", key) in stripe_api.emulator.requests
    assert stripe_api.emulator.payment_intent(intent)["payment_method"] == "pm_card_visa"
    # and the fact of the authorization reaches the desk as Stripe's usual webhooks
    assert _topics(outbox)[-2:] == ["charge.succeeded", "payment_intent.amount_capturable_updated"]


def test_a_retry_declined_again_is_done_and_says_why_until_a_later_one_succeeds(
    stripe_api: RunningEmulator, payments: StripePayments, outbox: WebhookOutbox
) -> None:
    # given a declined payment whose next two attempts will be declined too
    intent = _declined_payment(stripe_api, capture=True)
    declined = Decline(
        decline_code="insufficient_funds", message="Your card has insufficient funds."
    )
    stripe_api.emulator.decline_next(intent, 2, declined)
    first = _payments(stripe_api.base_url, "retry_payment", "retry:1", intent=intent)
    # when the playbook retries: the attempt is carried out, and declined
    answer = payments.send(first)
    assert answer.accepted is True
    assert answer.facts["status"] == "requires_payment_method"
    assert answer.facts["declined"] is True
    assert answer.facts["paid"] is False
    assert answer.facts["decline_code"] == "insufficient_funds"
    assert answer.facts["code"] == "card_declined"
    assert answer.facts["message"] == "Your card has insufficient funds."
    failures = _topics(outbox).count("payment_intent.payment_failed")
    # and the same command again (a retried job) is Stripe's replay: no second attempt
    assert payments.send(first).facts == answer.facts
    assert _topics(outbox).count("payment_intent.payment_failed") == failures
    # when the next retries go (new keys): one more decline, then the payment goes through
    second = payments.send(
        _payments(stripe_api.base_url, "retry_payment", "retry:2", intent=intent)
    )
    third = payments.send(_payments(stripe_api.base_url, "retry_payment", "retry:3", intent=intent))
    assert second.facts["declined"] is True
    assert (third.facts["status"], third.facts["paid"], third.facts["declined"]) == (
        "succeeded",
        True,
        False,
    )
    assert _topics(outbox)[-1] == "payment_intent.succeeded"


def test_a_paid_or_canceled_payment_is_not_attempted_again(
    stripe_api: RunningEmulator, payments: StripePayments
) -> None:
    # given a payment already captured and one canceled
    paid = stripe_api.emulator.create_payment_intent(15000)["id"]
    canceled = stripe_api.emulator.create_payment_intent(9000, capture=False)["id"]
    payments.send(_payments(stripe_api.base_url, "void", "void:1", intent=canceled))
    # when the playbook retries them
    done = payments.send(_payments(stripe_api.base_url, "retry_payment", "r:paid", intent=paid))
    gone = payments.send(_payments(stripe_api.base_url, "retry_payment", "r:gone", intent=canceled))
    # then the paid one is answered as it is, and the canceled one is refused; nothing confirmed
    assert done.accepted is True
    assert done.facts["already_paid"] is True
    assert done.facts["status"] == "succeeded"
    assert gone.accepted is False
    assert gone.facts["stripe_status"] == "canceled"
    assert not [r for r in stripe_api.emulator.requests if r[1].endswith("/confirm")]


def test_the_payment_intent_can_be_named_in_the_params(
    stripe_api: RunningEmulator, payments: StripePayments
) -> None:
    intent = _declined_payment(stripe_api)
    named = _payments(stripe_api.base_url, "retry_payment", "r:named", payment_intent=intent)
    assert payments.send(named).facts["authorized"] is True
    unnamed = payments.send(_payments(stripe_api.base_url, "retry_payment", "r:none"))
    assert unnamed.accepted is False
    assert "stripe_payment_intent" in (unnamed.message or "")


# -- Stripe: capture_check -----------------------------------------------------------------------


def test_capture_check_tells_how_long_the_authorization_lasts(
    stripe_api: RunningEmulator, payments: StripePayments, clock: SimulatedClock
) -> None:
    # given an authorization made at START (cards hold it 7 days), 100 hours ago
    intent = stripe_api.emulator.create_payment_intent(15000, capture=False)["id"]
    clock.advance(timedelta(hours=100))
    # when the playbook checks it
    answer = payments.send(_payments(stripe_api.base_url, "capture_check", "cc:1", intent=intent))
    # then it knows the deadline and the hours left, and nothing was captured
    assert answer.accepted is True
    assert answer.facts == {
        "status": "requires_capture",
        "currency": "USD",
        "amount_capturable": "150.00",
        "capture_before": "2025-03-10T09:00:00Z",
        "hours_left": 68.0,
        "expired": False,
        "captured": None,
    }
    assert stripe_api.emulator.payment_intent(intent)["status"] == "requires_capture"


def test_capture_check_captures_an_authorization_in_time_once(
    stripe_api: RunningEmulator, payments: StripePayments, outbox: WebhookOutbox
) -> None:
    intent = stripe_api.emulator.create_payment_intent(15000, capture=False)["id"]
    command = _payments(stripe_api.base_url, "capture_check", "cc:2", intent=intent, capture=True)
    # when the playbook's manual capture check runs, and its job runs again
    first, again = payments.send(command), payments.send(command)
    # then the payment was captured once, under the command's key
    assert first.facts["status"] == "succeeded"
    assert first.facts["captured"] == "150.00"
    assert first.facts["amount_capturable"] == "0.00"
    assert again.facts["captured"] == "150.00"
    assert ("POST", f"/v1/payment_intents/{intent}/capture", "cc:2") in stripe_api.emulator.requests
    assert _topics(outbox).count("charge.captured") == 1


def test_an_expired_authorization_is_reported_and_not_captured(
    stripe_api: RunningEmulator, payments: StripePayments, clock: SimulatedClock
) -> None:
    intent = stripe_api.emulator.create_payment_intent(15000, capture=False)["id"]
    clock.advance(timedelta(days=8))
    command = _payments(stripe_api.base_url, "capture_check", "cc:3", intent=intent, capture=True)
    answer = payments.send(command)
    assert answer.accepted is True
    assert (answer.facts["expired"], answer.facts["hours_left"]) == (True, 0.0)
    assert answer.facts["captured"] is None
    assert not [r for r in stripe_api.emulator.requests if r[1].endswith("/capture")]
    # and Stripe itself refuses a capture past the deadline
    reduce = _payments(
        stripe_api.base_url, "reduce_authorization", "ra:1", intent=intent, amount="10.00"
    )
    refused = payments.send(reduce)
    assert refused.accepted is False
    assert refused.facts["stripe_code"] == "charge_expired_for_capture"


def test_capture_check_of_a_captured_payment_has_no_deadline(
    stripe_api: RunningEmulator, payments: StripePayments
) -> None:
    intent = stripe_api.emulator.create_payment_intent(15000)["id"]
    answer = payments.send(_payments(stripe_api.base_url, "capture_check", "cc:4", intent=intent))
    assert answer.facts["status"] == "succeeded"
    assert (answer.facts["capture_before"], answer.facts["hours_left"]) == (None, None)
    assert answer.facts["captured"] == "150.00"


# -- the warehouse -------------------------------------------------------------------------------


def test_inventory_lookup_gives_the_stock_by_location(
    emulator: ThreePLEmulator, warehouse: RunningWarehouse, wms: ThreePLConnector
) -> None:
    emulator.set_stock("LAMP", {"DAL": 3, "RNO": 0, "EWR": 2})
    answer = wms.send(_wms(warehouse.base_url, "inventory_lookup", "inv:1", sku="LAMP", qty=4))
    assert answer.accepted is True
    assert answer.facts == {
        "sku": "LAMP",
        "locations": {"DAL": 3, "EWR": 2, "RNO": 0},
        "total": 5,
        "in_stock": True,
        "enough": True,
    }
    unknown = wms.send(_wms(warehouse.base_url, "inventory_lookup", "inv:2", sku="NOPE"))
    assert unknown.accepted is False
    assert unknown.facts == {"http_status": 404, "code": "sku_not_found"}
    without = wms.send(_wms(warehouse.base_url, "inventory_lookup", "inv:3"))
    assert (without.accepted, without.facts["code"]) == (False, "missing_param")


def test_a_label_is_reprinted_once_per_key(
    emulator: ThreePLEmulator, warehouse: RunningWarehouse, wms: ThreePLConnector
) -> None:
    emulator.add_order("1001", status="packed", lines={"LAMP": 1})
    command = _wms(warehouse.base_url, "label_reprint", "lbl:1", reason="torn")
    first, again = wms.send(command), wms.send(command)
    assert first.accepted is True
    assert first.facts == {"label_id": "lbl-1001-1", "tracking": "EMU-1001", "carrier": "EMU"}
    assert first.reference == "lbl-1001-1"
    assert (again.reference, again.facts) == (first.reference, first.facts)
    assert [(r.action, r.key, r.body) for r in emulator.performed] == [
        ("label", "lbl:1", {"reason": "torn"})
    ]
    other = wms.send(_wms(warehouse.base_url, "label_reprint", "lbl:2"))
    assert other.reference == "lbl-1001-2"
    unknown = wms.send(_wms(warehouse.base_url, "label_reprint", "lbl:3", ref="404"))
    assert (unknown.accepted, unknown.facts["code"]) == (False, "order_not_found")


def test_a_split_ships_some_lines_now_and_the_rest_later(
    emulator: ThreePLEmulator, warehouse: RunningWarehouse, wms: ThreePLConnector
) -> None:
    # given an order of a lamp and two bulbs, one bulb on backorder
    emulator.add_order("1001", status="released", lines={"LAMP": 1, "BULB": 2})
    lines = [{"sku": "LAMP", "qty": 1}, {"sku": "BULB", "qty": 1}]
    command = _wms(warehouse.base_url, "split_shipment", "split:1", lines=lines)
    # when the playbook splits it (and its job is sent again)
    first, again = wms.send(command), wms.send(command)
    # then there are two shipments: what ships now, and the bulb left for later
    assert first.accepted is True
    assert first.reference == "1001-S1"
    assert first.facts["shipment_ids"] == ["1001-S1", "1001-S2"]
    assert first.facts["shipments"][1] == {
        "id": "1001-S2",
        "status": "backordered",
        "lines": [{"sku": "BULB", "qty": 1}],
    }
    assert again.facts == first.facts
    assert len(emulator.performed) == 1
    split = emulator.order("1001")
    assert split is not None
    assert [s["id"] for s in split["shipments"]] == ["1001-S1", "1001-S2"]


def test_a_split_is_refused_once_shipped_or_for_lines_the_order_lacks(
    emulator: ThreePLEmulator, warehouse: RunningWarehouse, wms: ThreePLConnector
) -> None:
    emulator.add_order("1001", status="shipped", lines={"LAMP": 1, "BULB": 2})
    emulator.add_order("1002", status="released", lines={"LAMP": 1, "BULB": 2})
    bulb = [{"sku": "BULB", "qty": 1}]
    shipped = wms.send(_wms(warehouse.base_url, "split_shipment", "s:1", lines=bulb))
    assert shipped.accepted is False
    assert shipped.facts == {"http_status": 409, "code": "already_shipped"}
    assert "already shipped" in (shipped.message or "")
    odd = [{"sku": "DESK", "qty": 1}]
    lacking = wms.send(_wms(warehouse.base_url, "split_shipment", "s:2", "1002", lines=odd))
    assert (lacking.accepted, lacking.facts["code"]) == (False, "unknown_sku")
    without = wms.send(_wms(warehouse.base_url, "split_shipment", "s:3", "1002"))
    assert (without.accepted, without.facts["code"]) == (False, "missing_param")
    assert emulator.performed == []


def test_the_ship_method_changes_until_the_order_ships(
    emulator: ThreePLEmulator, warehouse: RunningWarehouse, wms: ThreePLConnector
) -> None:
    emulator.add_order("1001", status="picking", lines={"LAMP": 1})
    command = _wms(warehouse.base_url, "ship_method_update", "sm:1", method="expedited")
    first, again = wms.send(command), wms.send(command)
    assert first.facts == {"ship_method": "expedited", "previous_method": "standard"}
    assert again.facts == first.facts
    assert (emulator.order("1001") or {}).get("ship_method") == "expedited"
    unknown = wms.send(_wms(warehouse.base_url, "ship_method_update", "sm:2", method="teleport"))
    assert (unknown.accepted, unknown.facts["code"]) == (False, "unknown_method")
    emulator.set_status("1001", "shipped")
    late = wms.send(_wms(warehouse.base_url, "ship_method_update", "sm:3", method="overnight"))
    assert (late.accepted, late.facts["code"]) == (False, "already_shipped")


def test_a_reshipment_is_a_new_order_taken_from_stock_once(
    emulator: ThreePLEmulator, warehouse: RunningWarehouse, wms: ThreePLConnector
) -> None:
    # given a delivered order whose lamp arrived broken, and lamps in two warehouses
    emulator.add_order("1001", status="delivered", lines={"LAMP": 2, "BULB": 1})
    emulator.set_stock("LAMP", {"DAL": 1, "RNO": 3})
    lines = [{"sku": "LAMP", "qty": 2}]
    command = _wms(warehouse.base_url, "reship", "re:1", lines=lines, reason="damaged")
    # when the playbook reships the lamps (and the job is sent again)
    first, again = wms.send(command), wms.send(command)
    # then one new order sends them, from the warehouse with most stock
    assert first.accepted is True
    assert first.reference == "1001-R1"
    assert first.facts == {
        "reshipment_id": "1001-R1",
        "status": "released",
        "picked_from": {"LAMP": {"RNO": 2}},
    }
    assert again.facts == first.facts
    assert emulator.stock("LAMP") == {"DAL": 1, "RNO": 1}
    reshipped = emulator.order("1001-R1")
    assert reshipped is not None
    assert (reshipped["reship_of"], reshipped["lines"]) == ("1001", [{"sku": "LAMP", "qty": 2}])
    # and a reshipment the stock cannot cover is refused
    more = [{"sku": "LAMP", "qty": 3}]
    short = wms.send(_wms(warehouse.base_url, "reship", "re:2", lines=more, reason="lost"))
    assert (short.accepted, short.facts["code"]) == (False, "insufficient_stock")
    unknown = wms.send(_wms(warehouse.base_url, "reship", "re:3", "404", lines=lines, reason="x"))
    assert (unknown.accepted, unknown.facts["code"]) == (False, "order_not_found")


def test_warehouse_trouble_is_retried_later(
    emulator: ThreePLEmulator, warehouse: RunningWarehouse, wms: ThreePLConnector
) -> None:
    emulator.add_order("1001", status="released", lines={"LAMP": 1})
    emulator.fail_next(503)
    command = _wms(warehouse.base_url, "ship_method_update", "sm:9", method="overnight")
    with pytest.raises(OutsideUnavailable, match="HTTP 503"):
        wms.send(command)
    assert wms.send(command).facts["ship_method"] == "overnight"


def test_the_router_sends_playbook_actions_to_the_merchants_connectors(
    stripe_api: RunningEmulator,
    payments: StripePayments,
    emulator: ThreePLEmulator,
    warehouse: RunningWarehouse,
    wms: ThreePLConnector,
) -> None:
    router = OutsideRouter({"stripe": payments, "wms_rest": wms}, AcceptingOutside())
    intent = _declined_payment(stripe_api)
    emulator.set_stock("LAMP", {"DAL": 1})
    paid = router.send(_payments(stripe_api.base_url, "retry_payment", "rt:1", intent=intent))
    stock = router.send(_wms(warehouse.base_url, "inventory_lookup", "rt:2", sku="LAMP"))
    assert paid.facts["authorized"] is True
    assert stock.facts["total"] == 1
