"""The Stripe and Zendesk emulators send the desk signed webhooks when their state changes.

Real HTTP both ways, on SQLite and PostgreSQL: the emulators (``sandbox.stripe_emulator``,
``sandbox.zendesk_emulator``) queue the webhooks the vendor sends for each change in a
``WebhookOutbox`` aimed at a live desk; ``deliver_due`` posts them to
``/webhooks/{provider}/{merchant}`` signed with the merchant's secret, and the desk's answers
(cases, the order 360) are read through its API.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from recoverydesk.connectors.messages import ZendeskMessages
from recoverydesk.persistence.tables import events
from recoverydesk.sandbox.stripe_emulator import (
    TEST_KEY,
    RunningEmulator,
    StripeEmulator,
    running_stripe_emulator,
)
from recoverydesk.sandbox.webhook_outbox import DeliveryResult, WebhookOutbox
from recoverydesk.sandbox.zendesk_emulator import RunningZendesk, ZendeskEmulator, serve_zendesk
from recoverydesk.services import merchants as admin
from recoverydesk.services.clock import SimulatedClock
from recoverydesk.services.ports import OutsideCommand
from tests.e2e.conftest import LiveDesk

MERCHANT = "acme"
STRIPE_SECRET = "whsec_emulated_secret"
ZENDESK_SECRET = "zd_emulated_secret"
ZENDESK_EMAIL = "agent@acme.test"
ZENDESK_TOKEN = "zd-token"
CONFIG = f"""
merchant: {MERCHANT}
connectors:
  webhooks:
    stripe: {{secrets: [{STRIPE_SECRET}]}}
    zendesk: {{secrets: [{ZENDESK_SECRET}]}}
"""


@pytest.fixture
def api(live: LiveDesk, tmp_path: Path) -> httpx.Client:
    """The merchant, configured with its Stripe and Zendesk webhook secrets; its API client."""
    token = live.token(MERCHANT, "lead")
    path = tmp_path / "acme.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    with live.desk.uow() as uow:
        admin.apply_settings(uow, clock=live.desk.clock, name=MERCHANT, config=path)
        uow.commit()
    return live.client(token)


@pytest.fixture
def vendor_clock() -> SimulatedClock:
    """The vendors' clock (when their facts happen), a little behind the desk's wall clock;
    tests move it on between facts, as Stripe stamps events in whole seconds."""
    return SimulatedClock(datetime.now(UTC) - timedelta(minutes=30))


@pytest.fixture
def stripe_account(live: LiveDesk, vendor_clock: SimulatedClock) -> Iterator[RunningEmulator]:
    outbox = WebhookOutbox("stripe", clock=vendor_clock.now)
    outbox.aim(live.base_url, MERCHANT, STRIPE_SECRET)
    with running_stripe_emulator(outbox=outbox, clock=vendor_clock.now) as running:
        yield running


@pytest.fixture
def zendesk_account(live: LiveDesk, vendor_clock: SimulatedClock) -> Iterator[RunningZendesk]:
    outbox = WebhookOutbox("zendesk", clock=vendor_clock.now)
    outbox.aim(live.base_url, MERCHANT, ZENDESK_SECRET)
    emulator = ZendeskEmulator(
        email=ZENDESK_EMAIL, token=ZENDESK_TOKEN, outbox=outbox, clock=vendor_clock.now
    )
    with serve_zendesk(emulator) as running:
        yield running


def _outbox(emulator: StripeEmulator | ZendeskEmulator) -> WebhookOutbox:
    assert emulator.outbox is not None
    return emulator.outbox


def _sent(results: list[DeliveryResult]) -> list[tuple[str, int | None]]:
    return [(r.topic, r.status_code) for r in results]


def _stored(live: LiveDesk, event_id: str | None = None) -> int:
    query = select(func.count()).select_from(events)
    if event_id is not None:
        query = query.where(events.c.event_id == event_id)
    with live.desk.engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def _cases(api: httpx.Client, **params: str) -> list[dict[str, Any]]:
    answer = api.get("/api/v1/cases", params=params)
    assert answer.status_code == 200, answer.text
    cases: list[dict[str, Any]] = answer.json()["cases"]
    return cases


def _order(api: httpx.Client, ref: str) -> dict[str, Any]:
    answer = api.get(f"/api/v1/orders/{ref}")
    assert answer.status_code == 200, answer.text
    order: dict[str, Any] = answer.json()
    return order


def _paid(stripe: StripeEmulator, ref: str, amount: int = 5000) -> dict[str, Any]:
    """A PaymentIntent for order ``ref``, captured, whose webhooks the desk has taken."""
    intent = stripe.create_payment_intent(amount, metadata={"order_ref": ref})
    assert _sent(stripe.deliver_due()) == [
        ("charge.succeeded", 200),
        ("payment_intent.succeeded", 200),
    ]
    return intent


# -- Stripe --------------------------------------------------------------------------------------


def test_a_declined_payment_opens_a_payment_case_and_paying_closes_it(
    live: LiveDesk,
    api: httpx.Client,
    stripe_account: RunningEmulator,
    vendor_clock: SimulatedClock,
) -> None:
    # given a PaymentIntent for order 1001 that waits for the customer's card
    stripe = stripe_account.emulator
    intent = stripe.create_payment_intent(4200, metadata={"order_ref": "1001"}, confirm=False)
    assert stripe.deliver_due() == []  # nothing happened that Stripe reports
    # when the card is declined
    stripe.fail_payment(
        intent["id"], decline_code="insufficient_funds", message="Your card has insufficient funds."
    )
    # then nothing is sent until the outbox is pumped; then the desk stores the decline once
    # (Stripe reports it on the charge and on the PaymentIntent) and opens a payment case
    assert [o.topic for o in _outbox(stripe).waiting] == [
        "charge.failed",
        "payment_intent.payment_failed",
    ]
    assert _stored(live) == 0
    assert _sent(stripe.deliver_due()) == [
        ("charge.failed", 200),
        ("payment_intent.payment_failed", 200),
    ]
    assert _stored(live, f"psp:stripe:{intent['id']}:failed:{_latest_charge(stripe, intent)}") == 1
    assert _stored(live) == 1
    [case] = _cases(api, order="1001")
    assert (case["category"], case["closed_at"]) == ("payment_failed", None)
    payment = _order(api, "1001")["payment"]
    assert payment["failures"] == 1
    # when the customer pays with another card a minute later, the desk sees the capture
    # (reported twice by Stripe, stored once) and the payment case closes
    vendor_clock.advance(timedelta(minutes=1))
    stripe.confirm_payment(intent["id"])
    assert _sent(stripe.deliver_due()) == [
        ("charge.succeeded", 200),
        ("payment_intent.succeeded", 200),
    ]
    assert _stored(live, f"psp:stripe:{intent['id']}:captured") == 1
    [case] = _cases(api, order="1001")
    assert case["outcome"] == "released"
    assert case["closed_at"] is not None
    assert _order(api, "1001")["payment"]["captured"] == "42.00"


def test_a_dispute_opens_a_chargeback_case(
    live: LiveDesk, api: httpx.Client, stripe_account: RunningEmulator
) -> None:
    stripe = stripe_account.emulator
    intent = _paid(stripe, "2002", 7500)
    # when the cardholder disputes the payment
    dispute = stripe.open_dispute(intent["id"], reason="product_not_received")
    assert _sent(stripe.deliver_due()) == [("charge.dispute.created", 200)]
    # then the desk opens one chargeback case, with the evidence deadline
    [case] = _cases(api, category="chargeback")
    assert case["opened_by"] == f"psp:stripe:{dispute['id']}:opened"
    assert case["data"]["reason"] == "product_not_received"
    assert case["data"]["amount"] == "75.00"
    assert case["data"]["due_by"].startswith(_due_date(dispute))


def test_a_dispute_on_an_orders_payment_lands_on_that_order(
    live: LiveDesk, api: httpx.Client, stripe_account: RunningEmulator
) -> None:
    # Stripe gives a dispute no metadata of its own (the order_ref is on the charge and the
    # PaymentIntent only): the dispute stands in under its PaymentIntent id, which the order
    # learned from the payment's webhooks, and intake moves it to the order
    stripe = stripe_account.emulator
    intent = _paid(stripe, "2003")
    stripe.open_dispute(intent["id"])
    assert _sent(stripe.deliver_due()) == [("charge.dispute.created", 200)]
    assert [c["category"] for c in _cases(api, order="2003")] == ["chargeback"]


def test_a_refund_made_at_stripe_shows_in_the_order_360(
    live: LiveDesk, api: httpx.Client, stripe_account: RunningEmulator
) -> None:
    stripe = stripe_account.emulator
    intent = _paid(stripe, "3003", 5000)
    # when someone refunds 12.00 at Stripe (not the desk): a plain API call
    with httpx.Client(base_url=stripe_account.base_url, timeout=10) as http:
        answer = http.post(
            "/v1/refunds",
            data={"payment_intent": intent["id"], "amount": "1200", "reason": "duplicate"},
            headers={"Authorization": f"Bearer {TEST_KEY}"},
        )
    assert answer.status_code == 200, answer.text
    refund_id = answer.json()["id"]
    # then Stripe reports it twice (the charge and the refund), the desk stores it once
    assert _sent(stripe.deliver_due()) == [("charge.refunded", 200), ("refund.created", 200)]
    assert _stored(live, f"psp:stripe:{refund_id}") == 1
    [charge_event, refund_event] = stripe.events()[-2:]
    assert charge_event["data"]["object"]["amount_refunded"] == 1200
    assert charge_event["request"]["id"] == refund_event["request"]["id"] is not None
    # and the order 360 shows the money back, as a refund the desk did not make
    order = _order(api, "3003")
    assert (order["payment"]["captured"], order["payment"]["refunded"]) == ("50.00", "12.00")
    balance = order["ledger"]["balance"]
    assert balance["refunds_elsewhere"] == [{"refund_id": refund_id, "amount": "12.00"}]


def test_a_refund_on_a_recent_api_version_is_reported_by_the_refund_event(
    live: LiveDesk, api: httpx.Client, vendor_clock: SimulatedClock
) -> None:
    # given an account whose events are rendered in an API version from 2022-11-15 on
    outbox = WebhookOutbox("stripe", clock=vendor_clock.now)
    outbox.aim(live.base_url, MERCHANT, STRIPE_SECRET)
    with running_stripe_emulator(
        outbox=outbox, clock=vendor_clock.now, api_version="2024-06-20"
    ) as account:
        stripe = account.emulator
        intent = _paid(stripe, "3004", 5000)
        # when someone refunds 12.00 at Stripe
        with httpx.Client(base_url=account.base_url, timeout=10) as http:
            answer = http.post(
                "/v1/refunds",
                data={"payment_intent": intent["id"], "amount": "1200"},
                headers={"Authorization": f"Bearer {TEST_KEY}"},
            )
        assert answer.status_code == 200, answer.text
        refund_id = answer.json()["id"]
        # then charge.refunded (no refunds list any more) is taken as no fact, and the refund
        # comes from refund.created, stored once, naming the payment it refunds
        assert _sent(stripe.deliver_due()) == [("charge.refunded", 200), ("refund.created", 200)]
        [charge_event, _] = stripe.events()[-2:]
        assert "refunds" not in charge_event["data"]["object"]
        assert _stored(live, f"psp:stripe:{refund_id}") == 1
        # and, standing in under its PaymentIntent, it reaches the order that payment paid
        order = _order(api, "3004")
        assert (order["payment"]["captured"], order["payment"]["refunded"]) == ("50.00", "12.00")


def test_capture_cancel_and_an_early_fraud_warning_reach_the_desk(
    live: LiveDesk, api: httpx.Client, stripe_account: RunningEmulator
) -> None:
    stripe = stripe_account.emulator
    held = stripe.create_payment_intent(3000, capture=False, metadata={"order_ref": "4001"})
    dropped = stripe.create_payment_intent(2000, capture=False, metadata={"order_ref": "4002"})
    assert [topic for topic, _ in _sent(stripe.deliver_due())] == [
        "charge.succeeded",
        "payment_intent.amount_capturable_updated",
    ] * 2
    assert _order(api, "4001")["payment"]["authorized"] == "30.00"
    # when the merchant captures one and cancels the other through the API
    auth = {"Authorization": f"Bearer {TEST_KEY}"}
    with httpx.Client(base_url=stripe_account.base_url, headers=auth, timeout=10) as http:
        assert http.post(f"/v1/payment_intents/{held['id']}/capture").status_code == 200
        cancel = http.post(
            f"/v1/payment_intents/{dropped['id']}/cancel",
            data={"cancellation_reason": "abandoned"},
        )
        assert cancel.status_code == 200
    assert _sent(stripe.deliver_due()) == [
        ("charge.captured", 200),
        ("payment_intent.succeeded", 200),
        ("payment_intent.canceled", 200),
    ]
    assert _order(api, "4001")["payment"]["captured"] == "30.00"
    assert _order(api, "4002")["payment"]["voided"] is True
    # and the card network's early fraud warning puts the payment on a fraud hold
    warning = stripe.early_fraud_warning(held["id"])
    assert _sent(stripe.deliver_due()) == [("radar.early_fraud_warning.created", 200)]
    [case] = _cases(api, category="fraud_hold")
    assert case["opened_by"] == f"psp:stripe:{warning['id']}"


# -- Zendesk -------------------------------------------------------------------------------------


def _desk_message(zendesk: RunningZendesk, ticket: int) -> None:
    """The desk's own update of the ticket through the API (its message connector)."""
    connection = {
        "kind": "zendesk",
        "base_url": zendesk.base_url,
        "email": ZENDESK_EMAIL,
        "api_key": ZENDESK_TOKEN,
    }
    command = OutsideCommand(
        1,
        "5005",
        "helpdesk",
        "send_message",
        "c1:notify:1",
        {"template": "return_instructions", "to": "kim@example.com", "ticket": str(ticket)},
        connection=connection,
    )
    connector = ZendeskMessages(timeout=5.0)
    try:
        assert connector.send(command).accepted
    finally:
        connector.close()


def test_a_customer_reply_in_zendesk_reaches_the_desk(
    live: LiveDesk, api: httpx.Client, zendesk_account: RunningZendesk
) -> None:
    zendesk = zendesk_account.emulator
    # given a customer's ticket about order 5005, which the desk has heard of
    ticket = zendesk.open_ticket("Where is my order #5005?", "It has not arrived yet.")
    assert _sent(zendesk.deliver_due()) == [("ticket.created", 200)]
    # when the desk answers on the ticket (an agent's update: no webhook)
    _desk_message(zendesk_account, ticket)
    assert _outbox(zendesk).waiting == []
    # and the customer replies, which reopens the pending ticket
    comment = zendesk.customer_replies(ticket, "Please cancel it and refund me.")
    assert _sent(zendesk.deliver_due()) == [("ticket.comment_added", 200)]
    # then the desk holds the ticket once and the reply as customer.replied
    kinds = sorted((e["event_id"], e["type"]) for e in _order(api, "5005")["events"])
    assert kinds == [
        (f"helpdesk:zendesk:comment-{comment}", "customer.replied"),
        (f"helpdesk:zendesk:ticket-{ticket}", "ticket.created"),
    ]
    shown = zendesk.ticket(ticket)
    assert shown is not None
    assert shown["status"] == "open"
    assert [c["author_id"] == shown["requester_id"] for c in shown["comments"]] == [
        True,
        False,
        True,
    ]


# -- refused deliveries --------------------------------------------------------------------------


def test_refused_deliveries_are_retried_with_the_same_id_and_stored_once(
    live: LiveDesk, api: httpx.Client
) -> None:
    # given emulators whose outboxes are not aimed at the desk yet
    stripe_box, zendesk_box = WebhookOutbox("stripe"), WebhookOutbox("zendesk")
    stripe = StripeEmulator(outbox=stripe_box)
    zendesk = ZendeskEmulator(outbox=zendesk_box)
    intent = stripe.create_payment_intent(1500, metadata={"order_ref": "6006"}, confirm=False)
    stripe.fail_payment(intent["id"])
    ticket = zendesk.open_ticket("Cancel order 6006", "Please cancel.")
    ids = [o.delivery_id for o in stripe_box.waiting + zendesk_box.waiting]
    assert [o.topic for o in stripe_box.waiting] == [
        "charge.failed",
        "payment_intent.payment_failed",
    ]
    # when they are pumped with no desk, then with the wrong secrets
    failed = stripe.deliver_due() + zendesk.deliver_due()
    assert [(r.status_code, r.error) for r in failed] == [(None, "no desk configured")] * 3
    stripe_box.aim(live.base_url, MERCHANT, "whsec_wrong")
    zendesk_box.aim(live.base_url, MERCHANT, "zd_wrong")
    assert [r.status_code for r in stripe.deliver_due() + zendesk.deliver_due()] == [401] * 3
    assert _stored(live) == 0
    # then they wait, with the same ids, and go through once the desk is reachable with the
    # right secrets; nothing is left to send after that
    assert [o.delivery_id for o in stripe_box.waiting + zendesk_box.waiting] == ids
    stripe_box.aim(live.base_url, MERCHANT, STRIPE_SECRET)
    zendesk_box.aim(live.base_url, MERCHANT, ZENDESK_SECRET)
    assert [r.status_code for r in stripe.deliver_due() + zendesk.deliver_due()] == [200] * 3
    assert stripe.deliver_due() + zendesk.deliver_due() == []
    assert [(o.delivery_id, o.attempts) for o in stripe_box.sent + zendesk_box.sent] == [
        (ids[0], 3),
        (ids[1], 3),
        (ids[2], 3),
    ]
    assert _stored(live, f"psp:stripe:{intent['id']}:failed:{_latest_charge(stripe, intent)}") == 1
    assert _stored(live, f"helpdesk:zendesk:ticket-{ticket}") == 1
    assert _stored(live) == 2
    assert [c["category"] for c in _cases(api, order="6006")] == ["payment_failed"]


def _latest_charge(stripe: StripeEmulator, intent: dict[str, Any]) -> str:
    charge = stripe.payment_intent(intent["id"])["latest_charge"]
    assert isinstance(charge, str)
    return charge


def _due_date(dispute: dict[str, Any]) -> str:
    due = datetime.fromtimestamp(dispute["evidence_details"]["due_by"], UTC)
    return due.date().isoformat()
