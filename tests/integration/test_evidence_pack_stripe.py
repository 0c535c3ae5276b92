"""The evidence pack staged on a Stripe dispute, over real HTTP against the Stripe emulator.

A desk on SQLite receives an order (placed, paid by a PaymentIntent on the emulator, shipped and
delivered) and then the emulator's own ``charge.dispute.created`` webhook, normalized as Stripe's
webhooks are: the desk opens a chargeback case. The ``evidence_pack`` step runs on that case in a
unit of work (reading the order's events and the case's stored timeline), and its one
``payments.dispute_evidence`` call is sent through the Stripe connector as the outbox sends it;
the dispute read back from the emulator carries exactly the pack.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from recoverydesk.bootstrap import Desk, bootstrap
from recoverydesk.config import Settings
from recoverydesk.connectors.normalize import normalize
from recoverydesk.connectors.stripe_payments import StripePayments
from recoverydesk.domain.cases import Category
from recoverydesk.sandbox.stripe_emulator import (
    TEST_KEY,
    RunningEmulator,
    StripeEmulator,
    running_stripe_emulator,
)
from recoverydesk.services import merchants as admin
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.evidence_pack import evidence_step
from recoverydesk.services.playbook_kinds import OutsideCall, StepContext, StepOutcome
from recoverydesk.services.policy import Policy
from recoverydesk.services.ports import IncomingEvent, Merchant, OutsideAnswer, OutsideCommand

POLICIES = {"refund": "Unworn items can be returned within 30 days for a full refund."}


@pytest.fixture
def stripe_api() -> Iterator[RunningEmulator]:
    with running_stripe_emulator() as running:
        yield running


@pytest.fixture
def connector() -> Iterator[StripePayments]:
    payments = StripePayments(timeout=5.0, connect_timeout=2.0, max_network_retries=1)
    yield payments
    payments.close()


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    running = bootstrap(Settings(database_url=f"sqlite:///{tmp_path / 'desk.db'}"))
    running.upgrade()
    yield running
    running.close()


def _doc(kind: str, at: datetime, source: str, **data: Any) -> dict[str, Any]:
    return {
        "id": f"{source}:3001:{kind}",
        "source": source,
        "type": kind,
        "occurred_at": at.isoformat(),
        "order": {"ref": "3001"},
        "data": data,
    }


def _deliver(desk: Desk, merchant: Merchant, docs: list[dict[str, Any]]) -> None:
    desk.ingest(merchant, [IncomingEvent(parse_event(doc), json.dumps(doc)) for doc in docs])


def _a_delivered_order(desk: Desk, merchant: Merchant, intent: str) -> None:
    placed = datetime.now(UTC) - timedelta(days=12)
    order = {
        "ref": "3001",
        "channel": "shopify",
        "value": "150.00",
        "currency": "USD",
        "placed_at": placed.isoformat(),
        "customer": {"id": "c-1", "email": "kim@example.com"},
        "lines": [{"sku": "LAMP", "qty": 1, "price": "150.00"}],
        "shipping_address": {
            "name": "Kim Lee",
            "address1": "4 Harbour St",
            "city": "Portland",
            "province_code": "OR",
            "zip": "97201",
            "country_code": "US",
        },
        "ids": {"stripe_payment_intent": intent},
    }
    scan = {"tracking": "1Z999AA10123456784", "carrier": "ups"}
    _deliver(
        desk,
        merchant,
        [
            {**_doc("order.placed", placed, "shopify"), "order": order},
            _doc("payment.captured", placed + timedelta(minutes=1), "psp", amount="150.00"),
            _doc("fulfillment.shipped", placed + timedelta(days=1), "wms", **scan),
            _doc("fulfillment.delivered", placed + timedelta(days=3), "carrier", **scan),
        ],
    )


def _stripe_disputes(desk: Desk, merchant: Merchant, emulator: StripeEmulator) -> None:
    """The emulator's ``charge.dispute.created`` webhooks, read as the desk's Stripe intake
    reads them."""
    for event in emulator.events():
        if event["type"] == "charge.dispute.created":
            docs = normalize("stripe", event, received_at=datetime.now(UTC)).events
            _deliver(desk, merchant, docs)


def _run_step(desk: Desk, merchant: Merchant, params: dict[str, Any]) -> StepOutcome:
    with desk.uow() as uow:
        [case] = [
            c
            for c in uow.cases.for_orders(merchant.id, ["3001"], open_only=True)["3001"]
            if c.category == Category.CHARGEBACK
        ]
        assert case.id is not None
        locked = uow.cases.lock(merchant.id, case.id)
        order = uow.orders.get(merchant.id, "3001")
        assert locked is not None
        assert order is not None
        context = StepContext(
            uow=uow,
            merchant=merchant,
            policy=Policy.model_construct(),
            case=locked,
            order=order,
            step="evidence",
            params=params,
            key=f"playbook:acme:{case.id}:evidence:1",
            actor="playbook:chargeback@v1",
            now=datetime.now(UTC),
        )
        return evidence_step(context)


def _send(
    connector: StripePayments, base_url: str, call: OutsideCall, desk: Desk, merchant: Merchant
) -> OutsideAnswer:
    """The call as the outbox sends it: the step's key, the order's ids, the merchant's
    connection."""
    with desk.reader() as uow:
        order = uow.orders.get(merchant.id, "3001")
    assert order is not None
    return connector.send(
        OutsideCommand(
            merchant_id=merchant.id,
            order_ref="3001",
            system=call.system,
            action=call.action,
            key=f"playbook:acme:1:evidence:1{call.key_suffix}",
            params=call.params,
            connection={"kind": "stripe", "base_url": base_url, "api_key": TEST_KEY},
            order_ids=dict(order.system_ids),
        )
    )


def _merchant(desk: Desk) -> Merchant:
    with desk.uow() as uow:
        admin.add_merchant(uow, clock=desk.clock, name="acme")
        merchant = admin.require_merchant(uow, "acme")
        uow.commit()
    return merchant


def test_the_pack_is_staged_on_the_stripe_dispute(
    desk: Desk, stripe_api: RunningEmulator, connector: StripePayments
) -> None:
    # given a delivered order paid on Stripe, then disputed there as not received
    emulator = stripe_api.emulator
    merchant = _merchant(desk)
    intent = emulator.create_payment_intent(15000)["id"]
    _a_delivered_order(desk, merchant, intent)
    dispute = emulator.open_dispute(intent, reason="product_not_received", due_in_days=7)
    _stripe_disputes(desk, merchant, emulator)
    # when the evidence step runs on the chargeback case and its call is sent to Stripe
    outcome = _run_step(desk, merchant, {"policies": POLICIES})
    assert outcome.blocked is None
    [call] = outcome.calls
    answer = _send(connector, stripe_api.base_url, call, desk, merchant)
    # then Stripe accepted the evidence on that dispute, staged, not submitted
    assert answer.accepted is True, answer.message
    assert answer.reference == dispute["id"]
    stored = emulator.dispute(dispute["id"])
    assert stored["evidence"] == call.params["evidence"]
    assert stored["status"] == "needs_response"
    assert stored["evidence_details"]["submission_count"] == 0
    evidence = stored["evidence"]
    assert evidence["shipping_tracking_number"] == "1Z999AA10123456784"
    assert evidence["shipping_carrier"] == "UPS"
    assert evidence["shipping_address"] == "Kim Lee, 4 Harbour St, Portland, OR, 97201, US"
    assert evidence["refund_policy_disclosure"] == POLICIES["refund"]
    assert "Delivered on" in evidence["uncategorized_text"]
    # and the step's facts read the dispute's deadline from Stripe's own webhook
    assert outcome.facts["strength"] == "strong"
    assert outcome.facts["dispute"] == dispute["id"]
    due = datetime.fromtimestamp(dispute["evidence_details"]["due_by"], UTC)
    assert outcome.facts["due_by"] == due.isoformat()


def test_a_submitted_pack_goes_to_the_card_network_once(
    desk: Desk, stripe_api: RunningEmulator, connector: StripePayments
) -> None:
    # given a disputed, delivered order
    emulator = stripe_api.emulator
    merchant = _merchant(desk)
    intent = emulator.create_payment_intent(15000)["id"]
    _a_delivered_order(desk, merchant, intent)
    dispute = emulator.open_dispute(intent, reason="fraudulent")
    _stripe_disputes(desk, merchant, emulator)
    # when the step runs with submit, and its call is sent
    outcome = _run_step(desk, merchant, {"policies": POLICIES, "submit": True})
    [call] = outcome.calls
    answer = _send(connector, stripe_api.base_url, call, desk, merchant)
    # then the evidence is submitted: the dispute is under review, the pack as the desk made it
    assert answer.accepted is True, answer.message
    stored = emulator.dispute(dispute["id"])
    assert stored["status"] == "under_review"
    assert stored["evidence_details"]["submission_count"] == 1
    assert stored["evidence"] == call.params["evidence"]
    # and the pack said what a fraud claim still lacks (no card checks reported)
    assert outcome.facts["strength"] == "partial"
    assert outcome.facts["missing"] == ["avs_check", "cvc_check"]
