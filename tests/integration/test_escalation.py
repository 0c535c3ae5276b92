"""Triage, SLA clocks and escalation end to end on real databases, a real SMTP server and a real
chat receiver, driven by the simulated clock (no sleeping)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from recoverydesk.bootstrap import Desk, bootstrap
from recoverydesk.config import Settings
from recoverydesk.services import merchants as merchant_admin
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.casework import CaseAction, DeskAction, act_on_case
from recoverydesk.services.clock import SimulatedClock
from recoverydesk.services.ports import IncomingEvent, Merchant
from tests.integration.test_notify import ChatReceiver, SmtpServer

MONDAY_0900Z = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 10:00 in Berlin


def config(chat_url: str) -> str:
    return f"""
merchant: acme
time_zone: Europe/Berlin
calendar:
  time_zone: Europe/Berlin
  hours: {{mon: ["09:00-17:00"], tue: ["09:00-17:00"], wed: ["09:00-17:00"],
          thu: ["09:00-17:00"], fri: ["09:00-17:00"]}}
  holidays_country: DE
members:
  - {{name: ana, email: ana@acme.test}}
  - name: ben
    email: ben@acme.test
    away: [{{from: "2026-11-20T00:00:00Z", to: "2026-11-30T00:00:00Z"}}]
  - {{name: cai, email: cai@acme.test}}
queues:
  - name: pre_fulfilment
    categories: [payment_failed, fraud_hold, address_invalid, inventory_mismatch,
                 split_shipment, late_shipment_risk, wms_exception]
    members: [ana, ben, cai]
  - {{name: cancel_edit, categories: [change_request]}}
  - {{name: delivery, categories: [delivery_exception]}}
  - {{name: refunds, categories: [refund_request, concession_request]}}
  - {{name: chargebacks, categories: [chargeback]}}
  - {{name: drift, categories: [drift]}}
escalation:
  ops_lead: {{name: lead, email: lead@acme.test}}
  owners:
    finance: {{name: finance, email: finance@acme.test}}
    warehouse: {{name: warehouse, email: wh@acme.test}}
    fraud: {{name: fraud, email: risk@acme.test}}
  chat_webhook: {chat_url}/hooks/desk
"""


def event(event_id: str, kind: str, at: datetime, **data: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "source": "shopify",
        "type": kind,
        "occurred_at": at.isoformat(),
        "order": {"ref": "1001", "value": "600.00", "currency": "EUR", "channel": "web"},
        "data": data,
    }


@pytest.fixture
def desk(
    db_url: str,
    tmp_path: Path,
    smtp_server: SmtpServer,
    chat_receiver: ChatReceiver,
) -> Iterator[tuple[Desk, SimulatedClock, Merchant]]:
    clock = SimulatedClock(MONDAY_0900Z)
    settings = Settings(database_url=db_url, smtp_host="127.0.0.1", smtp_port=smtp_server.port)
    desk = bootstrap(settings, clock=clock)
    desk.upgrade()
    path = tmp_path / "acme.yaml"
    path.write_text(config(chat_receiver.base_url))
    with desk.uow() as uow:
        merchant = merchant_admin.add_merchant(uow, clock=clock, name="acme", config=path)
        uow.commit()
    with desk.reader() as uow:
        found = uow.merchants.by_name("acme")
    assert found is not None
    try:
        yield desk, clock, found
    finally:
        desk.close()
    del merchant


def ingest(desk: Desk, merchant: Merchant, *events: dict[str, Any]) -> None:
    items = [IncomingEvent(parse_event(e), json.dumps(e)) for e in events]
    desk.ingest(merchant, items)


def the_case(desk: Desk, merchant: Merchant) -> Any:
    with desk.reader() as uow:
        found = uow.cases.for_orders(merchant.id, ["1001"], open_only=False)["1001"]
    assert len(found) == 1
    return found[0]


def run_until(desk: Desk, clock: SimulatedClock, moment: datetime) -> None:
    clock.advance_to(moment)
    runner = desk.job_runner("test")
    while runner.run_due(limit=50).done:
        pass


def test_a_p1_case_is_assigned_warned_breached_reassigned_and_escalated_once_each(
    desk: tuple[Desk, SimulatedClock, Merchant],
    smtp_server: SmtpServer,
    chat_receiver: ChatReceiver,
) -> None:
    app, clock, merchant = desk
    # given a 600 EUR order whose payment failed on Monday 10:00 Berlin time
    ingest(app, merchant, event("shopify:1", "payment.failed", MONDAY_0900Z, reason="declined"))
    # then it is triaged P1 by the high-value rule into pre-fulfilment and given to ana
    # (round robin; ben is away), with a first-touch clock due one business hour later
    case = the_case(app, merchant)
    assert (case.priority, case.queue, case.owner) == ("P1", "pre_fulfilment", "ana")
    assert case.classification == "fixable_now"
    assert case.config_version == 1
    first_touch = case.clocks["first_touch"]
    assert first_touch.due_at == MONDAY_0900Z + timedelta(hours=1)

    # when 45 minutes pass (75%), the warning goes to the owner, by email and chat
    run_until(app, clock, MONDAY_0900Z + timedelta(minutes=46))
    assert [d.rcpt_tos for d in smtp_server.mailbox.deliveries] == [["ana@acme.test"]]
    # when the hour is up (100%), the ops lead hears of the breach and the case moves on to cai
    run_until(app, clock, MONDAY_0900Z + timedelta(minutes=61))
    assert smtp_server.mailbox.deliveries[-1].rcpt_tos == ["lead@acme.test"]
    assert the_case(app, merchant).owner == "cai"
    # when 90 minutes have passed (150%), finance (owner of payment failures) is told
    run_until(app, clock, MONDAY_0900Z + timedelta(minutes=91))
    # and running every timer again later changes nothing
    run_until(app, clock, MONDAY_0900Z + timedelta(hours=30))

    # then each stage fired exactly once, and each was sent once by email and once to chat
    case = the_case(app, merchant)
    assert [(e["clock"], e["stage"], e["to"]) for e in case.escalations] == [
        ("first_touch", "warning", "ana"),
        ("first_touch", "breach", "lead"),
        ("first_touch", "escalation", "finance"),
    ]
    assert [d.rcpt_tos for d in smtp_server.mailbox.deliveries] == [
        ["ana@acme.test"],
        ["lead@acme.test"],
        ["finance@acme.test"],
    ]
    keys = [json.loads(r.body)["key"] for r in chat_receiver.requests]
    assert keys == [e["key"] for e in case.escalations]
    assert all(r.path == "/hooks/desk" for r in chat_receiver.requests)
    assert case.clocks["first_touch"].breached


def test_waiting_on_the_customer_pauses_the_sla_clock_and_the_reply_resumes_it(
    desk: tuple[Desk, SimulatedClock, Merchant],
    smtp_server: SmtpServer,
) -> None:
    app, clock, merchant = desk
    # given an invalid address on a 600 EUR order (P1: first touch within one business hour)
    ingest(app, merchant, event("carrier:1", "address.invalid", MONDAY_0900Z))
    case = the_case(app, merchant)
    assert case.classification == "needs_customer_decision"
    # when ana asks the customer after 20 minutes, and the case waits on them
    clock.advance_to(MONDAY_0900Z + timedelta(minutes=20))
    with app.uow() as uow:
        act_on_case(
            uow,
            merchant=merchant,
            case_id=case.id,
            command=CaseAction(DeskAction.WAIT_CUSTOMER, actor="ana", note="which door?"),
            now=clock.now(),
        )
        uow.commit()
    # then the first touch is recorded and stops the first-touch clock, and the case waits
    case = the_case(app, merchant)
    assert case.first_touched_at == MONDAY_0900Z + timedelta(minutes=20)
    assert case.status.value == "waiting_customer"
    assert case.clocks["first_touch"].stopped_at == MONDAY_0900Z + timedelta(minutes=20)
    # when the customer answers two hours later
    reply_at = MONDAY_0900Z + timedelta(hours=2, minutes=20)
    clock.advance_to(reply_at)
    ingest(app, merchant, event("helpdesk:9", "customer.replied", reply_at, choice="door 2"))
    # then the case is back in progress, and no stage ever fired (the owner touched it in time)
    case = the_case(app, merchant)
    assert case.status.value == "in_progress"
    run_until(app, clock, MONDAY_0900Z + timedelta(days=3))
    assert the_case(app, merchant).escalations == []
    assert smtp_server.mailbox.deliveries == []


def test_an_exception_settled_on_arrival_is_still_triaged_and_has_no_running_clock(
    desk: tuple[Desk, SimulatedClock, Merchant],
) -> None:
    app, clock, merchant = desk
    # given an order that has already shipped
    ingest(app, merchant, event("wms:1", "fulfillment.shipped", MONDAY_0900Z, tracking="1Z"))
    # when the fraud screen's hold arrives afterwards (the case closes as shipped at once)
    later = MONDAY_0900Z + timedelta(minutes=5)
    clock.advance_to(later)
    ingest(app, merchant, event("risk:1", "hold.placed", later, hold_type="fraud"))
    # then the case is closed, yet triaged into its queue with its priority, and no clock runs
    case = the_case(app, merchant)
    assert (case.status.value, case.outcome.value) == ("closed", "shipped")
    assert (case.queue, case.priority) == ("pre_fulfilment", "P1")
    assert all(not c.running for c in case.clocks.values())
    assert case.owner is None
