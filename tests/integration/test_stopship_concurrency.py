"""One refund, however many hands reach for it at once (PostgreSQL, real threads).

A captured order of 110.00 has a whole-order cancellation whose workflow is one step (the ERP
update, waiting for its retry) away from refunding 110.00. At one instant (a ``threading.Barrier``)
two job runners start working the due jobs, and two operators ask, through ``act_on_case``, to
refund 110.00 on the order: twice on the same case (a double click: one intent) or on two of its
cases (two intents). Each thread has its own units of work. Whoever wins, exactly one refund may
reach the (thread-safe) payment provider and the ledger may hold exactly one refund entry; an
operator who lost is refused with ``refund_exceeds_captured`` or, for the same intent, is given
the entry that exists. The race is run several times on fresh orders.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from recoverydesk.bootstrap import Desk, bootstrap
from recoverydesk.config import Settings
from recoverydesk.domain.ledger import EntryKind, EntryStatus, LedgerRefusal
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.casework import CaseAction, DeskAction, act_on_case
from recoverydesk.services.clock import SimulatedClock
from recoverydesk.services.ports import IncomingEvent, Merchant, TransientConflict
from tests.integration.stopship_fakes import DOWN, FakeOutside

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
VALUE = Decimal("110.00")
ROUNDS = 6
STAGGER = (0.0, 0.005, 0.01, 0.02, 0.03, 0.04)  # seconds operators start after the barrier
DEADLOCK_ROUNDS = 20
CLIENT_RETRIES = 5  # an operator's client retries a request the database asked to retry


@dataclass
class Race:
    desk: Desk
    clock: SimulatedClock
    fake: FakeOutside
    merchant: Merchant
    client_retries: list[str] = field(default_factory=list)


@pytest.fixture
def race(pg_url: str) -> Iterator[Race]:
    clock = SimulatedClock(T0)
    fake = FakeOutside(clock)
    desk = bootstrap(Settings(database_url=pg_url), clock=clock, outside=fake)
    desk.upgrade()
    with desk.uow() as uow:
        merchant = uow.merchants.ensure("acme", time_zone="UTC", now=T0 - timedelta(days=1))
        uow.commit()
    try:
        yield Race(desk, clock, fake, merchant)
    finally:
        desk.close()


def _event(
    ref: str, kind: str, at: datetime, order: dict[str, Any] | None = None, **data: Any
) -> dict[str, Any]:
    source = "wms" if kind.startswith("fulfillment") else "shopify"
    return {
        "id": f"{source}:{ref}:{kind}",
        "source": source,
        "type": kind,
        "occurred_at": at.isoformat(),
        "order": {"ref": ref, **(order or {})},
        "data": data,
    }


def _drain(race: Race, *, minutes: int = 30) -> None:
    """One worker, alone, until nothing is due for the next ``minutes`` (retries included)."""
    runner = race.desk.job_runner("drain")
    for _ in range(minutes):
        while runner.run_due(limit=50).done:
            pass
        race.clock.advance(timedelta(minutes=1))


def _a_cancellation_about_to_refund(race: Race, ref: str) -> tuple[list[int], int]:
    """A captured order, not released, with an invalid address (a case) and a whole-order
    cancel request (a case and a workflow). The ERP was unreachable, so the workflow waits for
    the ERP update's retry, which is due now; the refund comes right after it."""
    now = race.clock.now()
    placed = now - timedelta(hours=1)
    order = {
        "value": str(VALUE),
        "currency": "USD",
        "placed_at": placed.isoformat(),
        "customer": {"id": f"c-{ref}", "email": f"c{ref}@example.com"},
        "lines": [{"sku": "LAMP", "qty": 1, "price": "60.00"}, {"sku": "BULB", "qty": 2}],
    }
    race.fake.authorize(ref, VALUE)
    assert race.fake.capture(ref)
    docs = [
        _event(ref, "order.placed", placed, order),
        _event(ref, "payment.captured", placed + timedelta(minutes=1), amount=str(VALUE)),
        _event(ref, "address.invalid", placed + timedelta(minutes=2), reason="no street number"),
        _event(ref, "cancel.requested", now, requested_by="customer"),
    ]
    race.desk.ingest(race.merchant, [IncomingEvent(parse_event(d), json.dumps(d)) for d in docs])
    race.fake.modes["erp"] = DOWN
    runner = race.desk.job_runner("setup")
    while runner.run_due(limit=50).done:
        pass
    race.fake.modes.clear()
    race.clock.advance(timedelta(minutes=2))  # past the ERP update's first backoff
    with race.desk.reader() as uow:
        cases = uow.cases.for_orders(race.merchant.id, [ref], open_only=False)[ref]
        (workflow,) = uow.cancellations.for_order(race.merchant.id, ref)
    assert workflow.stage.value == "stopped", workflow.stage
    assert "payment" not in workflow.commands, workflow.commands
    assert workflow.case_id is not None
    return sorted(case.id for case in cases if case.id is not None), workflow.case_id


def _operator(race: Race, case_id: int, late: float) -> Callable[[], str]:
    def refund() -> str:
        time.sleep(late)  # a few milliseconds after the workers, in some rounds
        command = CaseAction(DeskAction.REFUND, "fin", amount=VALUE)
        for attempt in range(CLIENT_RETRIES):
            try:
                with race.desk.uow() as uow:
                    act_on_case(
                        uow,
                        merchant=race.merchant,
                        case_id=case_id,
                        command=command,
                        now=race.clock.now(),
                    )
                    uow.commit()
            except LedgerRefusal as refusal:
                return refusal.code
            except TransientConflict as conflict:
                race.client_retries.append(f"case {case_id}, attempt {attempt + 1}: {conflict}")
                time.sleep(0.05)
                continue
            return "accepted"
        return "gave_up"

    return refund


def _worker(race: Race, name: str, operators_done: threading.Event) -> Callable[[], str]:
    def work() -> str:
        runner = race.desk.job_runner(name)
        for _ in range(200):
            stats = runner.run_due(limit=5)
            idle = stats.done + stats.failed + stats.lost == 0
            if idle and operators_done.is_set():
                return "idle"
            if idle:
                time.sleep(0.005)
        return "busy"

    return work


def _all_at_once(jobs: list[Callable[[], str]], done: threading.Event, operators: int) -> list[str]:
    """Run each job in its own thread, released together by a barrier; the first ``operators``
    jobs are the operators (``done`` is set when they have all answered)."""
    barrier = threading.Barrier(len(jobs))
    results: list[str] = ["?"] * len(jobs)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[n] = jobs[n]()
        except BaseException as error:  # any error fails the test below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(jobs))]
    for thread in threads[:operators]:
        thread.start()
    for thread in threads[operators:]:
        thread.start()
    for thread in threads[:operators]:
        thread.join(timeout=60)
    done.set()
    for thread in threads[operators:]:
        thread.join(timeout=60)
    assert not errors, errors
    assert all(not thread.is_alive() for thread in threads)
    return results


@pytest.mark.postgres
@pytest.mark.parametrize("who", ["double_click", "two_cases"])
def test_two_workers_and_two_operators_refund_one_order_once(race: Race, who: str) -> None:
    for round_number in range(ROUNDS):
        ref = f"R{round_number}-{who}"
        # given a captured order of 110.00 whose cancellation will refund 110.00 next, and an
        # operator refund of 110.00 asked twice on one case, or once on each of two cases
        cases, _ = _a_cancellation_about_to_refund(race, ref)
        assert len(cases) == 2, cases
        first, second = (cases[0], cases[0]) if who == "double_click" else tuple(cases)
        # when two workers and the two operator requests start at the same instant (the
        # operators a few milliseconds late in some rounds, so that each side wins sometimes)
        late = STAGGER[round_number % len(STAGGER)]
        done = threading.Event()
        outcome = _all_at_once(
            [
                _operator(race, first, late),
                _operator(race, second, late),
                _worker(race, "w1", done),
                _worker(race, "w2", done),
            ],
            done,
            operators=2,
        )
        _drain(race)
        # then exactly one refund of 110.00 reached the provider, and the ledger holds exactly
        # one refund entry for the order: the one the provider made
        made = [r for r in race.fake.refunds if r.order_ref == ref]
        assert [r.amount for r in made] == [VALUE], (outcome, race.fake.refunds)
        with race.desk.reader() as uow:
            entries = [
                e for e in uow.ledger.for_order(race.merchant.id, ref) if e.kind is EntryKind.REFUND
            ]
            timeline = [
                row
                for case_id in cases
                for row in uow.cases.timeline(race.merchant.id, case_id)
                if row["kind"] == "payment_requested"
            ]
        assert [(e.key, e.status) for e in entries] == [(made[0].key, EntryStatus.SENT)] or [
            (e.key, e.status) for e in entries
        ] == [(made[0].key, EntryStatus.CONFIRMED)], (
            outcome,
            entries,
        )
        # and each operator was either given the refund (for a double click: the one entry,
        # requested once on the timeline) or refused because nothing is left to refund
        operators = outcome[:2]
        assert set(operators) <= {"accepted", "refund_exceeds_captured"}, operators
        if who == "two_cases":
            assert "refund_exceeds_captured" in operators, operators
        assert len(timeline) == (1 if "accepted" in operators else 0), timeline
        assert race.fake.violations == []


@pytest.mark.postgres
def test_an_operator_refund_does_not_deadlock_with_the_worker_advancing_the_order(
    race: Race,
) -> None:
    """Regression (the desk now locks the order first on every path): ``casework.act_on_case``
    locked the case, then (``stopship.pay_by_hand``) the
    order; the worker's ``stopship.move`` (from ``SendOutside.record`` or ``advance``) locks the
    workflow, then the order, then (``_persist``) the workflow's case. An operator's refund on
    the cancellation's case while the worker advances it deadlocks; PostgreSQL aborts one side
    after ``deadlock_timeout`` (1 s). When the operator's request is the victim it raises
    ``TransientConflict``, which is not a ``DeskError``: the API answers 500 internal_error;
    when the worker is, its job fails and waits for a retry. (The money stays right: see the
    test above.) Probabilistic: a deadlock, on either side, in roughly one round in four; the
    test stops at the first."""
    for round_number in range(DEADLOCK_ROUNDS):
        ref = f"D{round_number}"
        # given a cancellation about to refund, and its case
        _, case_id = _a_cancellation_about_to_refund(race, ref)
        # when an operator refunds on that case just as two workers advance the workflow
        late = STAGGER[round_number % len(STAGGER)]
        done = threading.Event()
        outcome = _all_at_once(
            [
                _operator(race, case_id, late),
                _worker(race, "w1", done),
                _worker(race, "w2", done),
            ],
            done,
            operators=1,
        )
        _drain(race)
        # then neither the operator nor a worker was aborted by a deadlock
        with race.desk.engine.connect() as connection:
            aborted = connection.execute(
                text("SELECT error FROM job_attempts WHERE error LIKE '%deadlock detected%'")
            ).all()
        assert race.client_retries == [], (round_number, outcome, race.client_retries)
        assert aborted == [], (round_number, outcome, aborted)
