"""The concession step on real databases: a lost parcel is reshipped or refunded by the matrix,
within the merchant's monthly budget and the customer's repeat limit, read from the refund
ledger; a concession refund is booked once however often its step runs.

The desk is built as in production (``bootstrap``, migrations, a simulated clock) with the
default concession policy (a 2000.00 USD budget a month; a lost parcel under 100 is reshipped,
from 100 refunded; three concessions per customer in 90 days). Orders arrive as events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from recoverydesk.bootstrap import Desk, bootstrap
from recoverydesk.config import Settings
from recoverydesk.domain.ledger import EntryStatus, LedgerEntry
from recoverydesk.persistence.tables import jobs
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.clock import SimulatedClock
from recoverydesk.services.concessions import concession_step
from recoverydesk.services.playbook_kinds import StepContext, StepOutcome
from recoverydesk.services.ports import IncomingEvent, Merchant
from recoverydesk.services.triage import triage_for

T0 = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
STEP = "make_good"


@dataclass
class World:
    desk: Desk
    clock: SimulatedClock
    merchant: Merchant


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    clock = SimulatedClock(T0)
    desk = bootstrap(Settings(database_url=db_url), clock=clock)
    desk.upgrade()
    with desk.uow() as uow:
        merchant = uow.merchants.ensure("acme", time_zone="UTC", now=T0 - timedelta(days=30))
        uow.commit()
    try:
        yield World(desk, clock, merchant)
    finally:
        desk.close()


def _event(
    ref: str, type_: str, at: datetime, order: dict[str, Any], **data: Any
) -> dict[str, Any]:
    system = type_.split(".", maxsplit=1)[0]
    source = {"fulfillment": "wms", "delivery": "carrier"}.get(system, "shopify")
    return {
        "id": f"{source}:{ref}:{type_}",
        "source": source,
        "type": type_,
        "occurred_at": at.isoformat(),
        "order": {"ref": ref, **order},
        "data": data,
    }


def a_lost_parcel(
    w: World, ref: str, value: str, *, customer: str, captured: bool = True, kind: str = "lost"
) -> int:
    """An order placed and paid two days ago, shipped, and now reported lost by the carrier;
    returns its delivery exception case."""
    now = w.clock.now()
    facts = {
        "value": value,
        "currency": "USD",
        "placed_at": (now - timedelta(days=2)).isoformat(),
        "customer": {"id": customer, "email": f"{customer}@example.com"},
        "lines": [{"sku": "LAMP", "qty": 1, "price": value}],
    }
    docs = [_event(ref, "order.placed", now - timedelta(days=2), facts)]
    if captured:
        docs.append(_event(ref, "payment.captured", now - timedelta(days=2), {}, amount=value))
    docs += [
        _event(ref, "fulfillment.shipped", now - timedelta(days=1), {}),
        _event(ref, "delivery.exception", now, {}, kind=kind),
    ]
    w.desk.ingest(w.merchant, [IncomingEvent(parse_event(d), json.dumps(d)) for d in docs])
    with w.desk.reader() as uow:
        cases = uow.cases.for_orders(w.merchant.id, [ref], open_only=True)[ref]
    (case,) = [c for c in cases if c.category == "delivery_exception"]
    assert case.id is not None
    return case.id


def run_step(w: World, case_id: int, *, attempt: int = 1, **params: Any) -> StepOutcome:
    """The concession step of a playbook, in its own unit of work, as the engine runs it."""
    with w.desk.uow() as uow:
        case = uow.cases.lock(w.merchant.id, case_id)
        assert case is not None
        order = uow.orders.get(w.merchant.id, case.order_ref)
        assert order is not None
        context = StepContext(
            uow=uow,
            merchant=w.merchant,
            policy=triage_for(uow, w.merchant).policy,
            case=case,
            order=order,
            step=STEP,
            params=params,
            key=f"playbook:acme:{case_id}:{STEP}:{attempt}",
            actor="playbook:lost_parcel@1",
            now=w.clock.now(),
        )
        outcome = concession_step(context)
        uow.cases.save(w.merchant.id, [case])
        uow.commit()
    return outcome


def ledger_of(w: World, ref: str) -> list[LedgerEntry]:
    with w.desk.reader() as uow:
        return uow.ledger.for_order(w.merchant.id, ref)


def send_due(w: World) -> None:
    runner = w.desk.job_runner("test")
    while runner.run_due(limit=50).done:
        pass


def test_earlier_concession_refunds_use_up_the_budget_and_the_next_goes_to_a_lead(
    world: World,
) -> None:
    w = world
    # given two lost parcels of 900.00 each, refunded as concessions and sent to the provider
    for ref in ("2001", "2002"):
        outcome = run_step(w, a_lost_parcel(w, ref, "900.00", customer=f"c-{ref}"))
        assert outcome.facts["remedy"] == "refund"
        assert outcome.calls == ()  # money goes through the ledger, never as an outside call
    send_due(w)
    assert [e.status for e in ledger_of(w, "2001")] == [EntryStatus.SENT]
    # when a third lost parcel of 300.00 is decided, with 200.00 left of the 2000.00 budget
    third = a_lost_parcel(w, "2003", "300.00", customer="c-2003")
    outcome = run_step(w, third)
    # then it goes to a lead, over budget, and nothing is refunded
    assert outcome.facts == {
        "remedy": "escalate",
        "amount": "0",
        "currency": "USD",
        "reason": "over budget",
        "kind": "lost",
        "rule": 1,
        "budget_left": "200.00",
        "escalate": True,
    }
    assert outcome.blocked is None
    assert ledger_of(w, "2003") == []
    # when a small lost parcel (80.00) is decided: its reship costs 40.00, within what is left
    small = run_step(w, a_lost_parcel(w, "2004", "80.00", customer="c-2004"))
    # then it is reshipped through the warehouse, the lost lines again
    assert (small.facts["remedy"], small.facts["amount"]) == ("reship", "40.00")
    assert small.facts["budget_left"] == "160.00"
    (call,) = small.calls
    assert (call.system, call.action) == ("wms", "reship")
    assert call.params == {"lines": [{"sku": "LAMP", "qty": 1}], "reason": "lost"}


def test_a_new_month_has_a_new_budget(world: World) -> None:
    w = world
    # given a month whose budget went on two 1000.00 refunds
    for ref in ("3001", "3002"):
        run_step(w, a_lost_parcel(w, ref, "1000.00", customer=f"c-{ref}"))
    late = a_lost_parcel(w, "3003", "300.00", customer="c-3003")
    assert run_step(w, late).facts["reason"] == "over budget"
    # when the lead's case is worked again on the first of the next month
    w.clock.advance_to(datetime(2026, 12, 1, 0, 5, tzinfo=UTC))
    outcome = run_step(w, late, attempt=2)
    # then the refund is given from December's budget and booked as a concession
    assert (outcome.facts["remedy"], outcome.facts["budget_left"]) == ("refund", "1700.00")
    (entry,) = ledger_of(w, "3003")
    assert (entry.amount, entry.detail) == (Decimal("300.00"), {"concession": "yes"})


def test_a_concession_refund_is_booked_once_when_its_step_runs_twice(world: World) -> None:
    w = world
    # given a lost parcel of 250.00
    case_id = a_lost_parcel(w, "4001", "250.00", customer="c-4001")
    # when the step runs, and runs again (same case, same attempt: a retry after a crash)
    first = run_step(w, case_id)
    again = run_step(w, case_id)
    # then one refund of 250.00 is in the ledger, with one job to send it
    (entry,) = ledger_of(w, "4001")
    assert (entry.amount, entry.status, entry.case_id) == (Decimal("250.00"), "pending", case_id)
    with w.desk.engine.connect() as db:
        sends = db.execute(
            select(func.count()).select_from(jobs).where(jobs.c.kind == "outbound.send")
        ).scalar_one()
    assert sends == 1
    # and both runs say the same refund, the second that it was already booked
    assert (first.facts["booked_now"], again.facts["booked_now"]) == (True, False)
    assert first.facts["ledger_key"] == again.facts["ledger_key"] == entry.key
    assert (again.facts["remedy"], again.facts["amount"]) == ("refund", "250.00")
    assert first.facts["budget_left"] == again.facts["budget_left"] == "1750.00"


def test_a_customer_with_three_concessions_in_the_window_goes_to_a_lead(world: World) -> None:
    w = world
    # given a customer whose three earlier lost parcels (on three orders) were refunded
    for n, ref in enumerate(("5001", "5002", "5003")):
        run_step(w, a_lost_parcel(w, ref, "120.00", customer="c-often"))
        w.clock.advance(timedelta(days=10 + n))
    # when their fourth lost parcel is decided, and another customer's the same day
    fourth = run_step(w, a_lost_parcel(w, "5004", "120.00", customer="c-often"))
    other = run_step(w, a_lost_parcel(w, "5005", "120.00", customer="c-once"))
    # then the regular customer's goes to a lead; the other customer is refunded
    assert (fourth.facts["remedy"], fourth.facts["reason"]) == ("escalate", "repeat concessions")
    assert ledger_of(w, "5004") == []
    assert other.facts["remedy"] == "refund"
    # when 90 days have passed since the first of them
    w.clock.advance_to(T0 + timedelta(days=91))
    # then only two remain in the window, and the customer is refunded again
    again = run_step(w, a_lost_parcel(w, "5006", "120.00", customer="c-often"))
    assert again.facts["remedy"] == "refund"


def test_a_late_parcel_gets_a_partial_refund_and_an_unpaid_order_blocks_the_step(
    world: World,
) -> None:
    w = world
    # given a parcel delayed by the carrier (a delivery exception of kind "delay")
    late = run_step(w, a_lost_parcel(w, "6001", "60.00", customer="c-6001", kind="delay"))
    # then 15% of it is refunded as a concession
    assert (late.facts["kind"], late.facts["remedy"], late.facts["amount"]) == (
        "late",
        "partial_refund",
        "9.00",
    )
    assert [e.amount for e in ledger_of(w, "6001")] == [Decimal("9.00")]
    # given a lost parcel whose payment was never captured
    unpaid = a_lost_parcel(w, "6002", "150.00", customer="c-6002", captured=False)
    # when the refund is decided
    outcome = run_step(w, unpaid)
    # then the ledger refuses it, and the step waits for a person with the reason
    assert outcome.blocked is not None
    assert "nothing was captured" in outcome.blocked
    assert ledger_of(w, "6002") == []


def test_the_steps_kind_param_overrides_the_cases_facts(world: World) -> None:
    w = world
    # given a lost parcel the customer says was not as described
    case_id = a_lost_parcel(w, "7001", "40.00", customer="c-7001")
    # when the step names the kind, or a kind the desk does not know
    named = run_step(w, case_id, kind="not_as_described")
    unknown = run_step(w, case_id, attempt=2, kind="stolen")
    # then the matrix decides that kind (a small mismatch is refunded), or the step waits
    assert (named.facts["kind"], named.facts["remedy"]) == ("not_as_described", "refund")
    assert unknown.blocked == "unknown concession kind 'stolen'"
