"""The money invariants of STOPSHIP.md hold under anything the world does to a cancellation.

A hypothesis state machine drives a real desk (a SQLite file database, the real job runner, the
simulated clock) against a fake payment provider / warehouse / ERP / messaging (``stopship_fakes``)
that behaves like the real ones and records what it really did. The rules interleave: orders
placed (authorized only or captured, at any fulfilment state), captures, warehouse progress,
shipments and returns; cancel requests (customer, ops fraud, auto; whole or partial; by event or
by the desk's own request); the same event delivered twice; events that happened earlier than
ones already delivered; warehouse acknowledgments that are timely, late, late-delivered, rejected
or missing; refunds made elsewhere; the provider's own refund webhooks (with or without the
intent); manual refunds and voids through ``act_on_case`` (some of which must be refused);
retry / convert actions; connector failures and refusals; and worker crashes between the call
to the provider and the recording of its answer.

After every step: (a) provider refunds + refunds made elsewhere <= captured, and the desk never
asked the provider for an overdraft; (b) one refund per idempotency key and per business intent
at the provider, one ledger entry per key, and every provider refund has its ledger entry;
(c) no void for a captured payment; (d) no "cancellation confirmed" message before the stop was
confirmed; (e) at most one open workflow per order; (f) ledger refunds never above captured; and
no job failed with anything but a connector failure. ``settle`` (a rule) also checks that once
everything has been answered the ledger tells the truth about every provider refund.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import sqlite3
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from sqlalchemy import text

from recoverydesk.bootstrap import bootstrap
from recoverydesk.config import Settings
from recoverydesk.domain.errors import InvalidTransition
from recoverydesk.domain.ledger import (
    EntryKind,
    EntryStatus,
    LedgerEntry,
    LedgerRefusal,
    intent_key,
)
from recoverydesk.domain.money import ZERO
from recoverydesk.domain.stopship import Stage
from recoverydesk.persistence.migrate import upgrade
from recoverydesk.services import stopship
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.casework import CaseAction, DeskAction, act_on_case
from recoverydesk.services.clock import SimulatedClock
from recoverydesk.services.jobs import OutsideStep, RunStats
from recoverydesk.services.ports import IncomingEvent, OutsideUnavailable
from tests.integration.stopship_fakes import (
    DOWN,
    REFUSE,
    FakeOutside,
    ProviderRefund,
    StopRequest,
)

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday, 09:00 UTC: the default calendar's day
LINES = (("LAMP", 1, "60.00"), ("BULB", 2, "25.00"))
VALUE = Decimal("110.00")
PARTIAL = {
    "LAMP": [("LAMP", 1)],
    "BULB": [("BULB", 1)],
    "BULBS": [("BULB", 2)],
    "LAMP+BULB": [("LAMP", 1), ("BULB", 1)],
}
AMOUNTS = ("10.00", "25.00", "50.00", "60.00", "110.00", "500.00")
STATES = ("not_released", "released", "picking", "packed")
MAX_ORDERS = 3
LEASE = timedelta(seconds=60)  # Settings.worker_lease_seconds
PAST_ANY_ACK_WINDOW = timedelta(days=4)  # 2 working hours, even from a Friday afternoon
WORKFLOW_JOBS = (stopship.SEND, stopship.ADVANCE, stopship.ACK_DUE)
RETRIED = (stopship.SEND, stopship.ADVANCE)  # not ACK_DUE: settling does not end ack windows
# Each example copies a small database: in memory-backed /dev/shm where there is one (faster).
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None
REFUSALS = frozenset(
    {
        "invalid_amount",
        "nothing_captured",
        "refund_exceeds_captured",
        "payment_captured",
        "already_voided",
        "nothing_to_void",
        "refund_would_leak",
        "no_open_cancellation",
        "already_cancelled",
        "not_cancellable",
        "cannot_reduce_authorization",
        "nothing_to_retry",
        "cannot_convert",
    }
)


def intent_of(entry: LedgerEntry) -> tuple[object, ...]:
    """The business intent of a ledger entry: its cancellation (every attempt), or its case and
    amount (an operator's refund)."""
    if entry.cancellation_id is not None:
        return ("cancellation", entry.cancellation_id)
    return ("case", entry.case_id, entry.kind.value, entry.amount)


@functools.cache
def _template() -> Path:
    """A migrated database with the merchant in it, copied for each example (migrating takes
    longer than a whole example)."""
    directory = Path(tempfile.mkdtemp(prefix="stopship-template-", dir=SCRATCH))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    url = f"sqlite:///{directory / 'desk.db'}"
    upgrade(url)
    desk = bootstrap(Settings(database_url=url), clock=SimulatedClock(T0))
    with desk.uow() as uow:
        uow.merchants.ensure("acme", time_zone="UTC", now=T0 - timedelta(days=1))
        uow.commit()
    desk.close()
    return directory / "desk.db"


def _copy_database(source: Path, target: Path) -> None:
    with closing(sqlite3.connect(source)) as old, closing(sqlite3.connect(target)) as new:
        old.backup(new)


class StopShipMachine(RuleBasedStateMachine):
    orders = Bundle("orders")

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="stopship-", dir=SCRATCH))
        _copy_database(_template(), self.directory / "desk.db")
        self.clock = SimulatedClock(T0)
        self.fake = FakeOutside(self.clock)
        url = f"sqlite:///{self.directory / 'desk.db'}"
        self.desk = bootstrap(Settings(database_url=url), clock=self.clock, outside=self.fake)
        with self.desk.reader() as uow:
            found = uow.merchants.by_name("acme")
        assert found is not None
        self.merchant = found
        self.runner = self.desk.job_runner("worker")
        self.refs: list[str] = []
        self.placed_at: dict[str, datetime] = {}
        self.cancel_asked: set[str] = set()
        self.elsewhere: dict[str, Decimal] = defaultdict(lambda: ZERO)
        self.reported: set[str] = set()  # provider refunds a webhook reported
        self.delivered: list[dict[str, Any]] = []
        self.seq = 0
        self.behind = False  # the worker runs after every step unless it fell behind
        self.crash_armed = False
        self.crashes = 0
        self.settled_at_calls = 0

    def teardown(self) -> None:
        self.desk.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- helpers ----------------------------------------------------------------------------

    def _event(
        self,
        ref: str,
        kind: str,
        source: str,
        *,
        ago: timedelta = timedelta(0),
        at: datetime | None = None,
        **data: Any,
    ) -> dict[str, Any]:
        self.seq += 1
        moment = at if at is not None else self.clock.now() - ago
        moment = max(moment, self.placed_at.get(ref, moment))
        return {
            "id": f"{source}:{ref}:{kind}:{self.seq}",
            "source": source,
            "type": kind,
            "occurred_at": moment.isoformat(),
            "order": {"ref": ref},
            "data": data,
        }

    def _deliver(self, *docs: dict[str, Any]) -> None:
        items = [IncomingEvent(parse_event(doc), json.dumps(doc)) for doc in docs]
        self.desk.ingest(self.merchant, items)
        self.delivered += docs
        self._keep_up()

    def _work(self) -> None:
        """What the worker does when it gets round to it: every due job, until none is left.
        An armed crash happens first, on the first outbound call the doomed worker makes."""
        if self.crash_armed:
            self.crash_armed = not self._crash()
        for _ in range(60):
            stats = self.runner.run_due(limit=50)
            if stats.done + stats.failed + stats.lost == 0:
                return

    def _keep_up(self) -> None:
        if not self.behind:
            self._work()

    def _crash(self) -> bool:
        """A worker claims the due jobs, runs them until the first outbound call, makes the call
        and dies before it records the answer (``JobRunner._call_outside`` then ``record``):
        what it claimed comes back when its lease ends."""
        now = self.clock.now()
        with self.desk.uow() as uow:
            claimed = uow.jobs.claim(now=now, worker="doomed", lease=LEASE, limit=50)
            uow.commit()
        doomed = self.desk.job_runner("doomed")
        step = self.desk.handlers[stopship.SEND]
        assert isinstance(step, OutsideStep)
        for job in claimed:
            if job.kind != stopship.SEND:
                doomed._run(job, RunStats())
                continue
            with self.desk.uow() as uow:
                prepared = step.prepare(uow, job, now)
            with suppress(OutsideUnavailable):
                step.call(prepared)
            self.crashes += 1
            return True
        return False

    def _pass(self, span: timedelta) -> None:
        self.clock.advance(span)
        self._work()

    def _cases(self, ref: str) -> list[int]:
        with self.desk.reader() as uow:
            found = uow.cases.for_orders(self.merchant.id, [ref], open_only=False).get(ref, [])
        return sorted(case.id for case in found if case.id is not None)

    def _act(self, case_id: int, command: CaseAction, *, keep_up: bool = True) -> str | None:
        """Act on a case as an operator would; the refusal code, or None when accepted."""
        code = None
        try:
            with self.desk.uow() as uow:
                act_on_case(
                    uow,
                    merchant=self.merchant,
                    case_id=case_id,
                    command=command,
                    now=self.clock.now(),
                )
                uow.commit()
        except (LedgerRefusal, InvalidTransition) as refusal:
            code = refusal.code
        assert code is None or code in REFUSALS, f"unexpected refusal {code}"
        if code is None and keep_up:
            self._keep_up()
        return code

    def _left_to_refund(self, ref: str) -> Decimal:
        """What the world (not the desk) says may still be refunded on the order."""
        captured = self.fake.captured.get(ref, ZERO)
        return captured - self.fake.refunded_by_api(ref) - self.elsewhere[ref]

    def _ledger_has(self, key: str) -> bool:
        with self.desk.reader() as uow:
            return uow.ledger.by_key(self.merchant.id, key) is not None

    # -- the world: orders, payments, the warehouse -------------------------------------------

    @initialize(
        target=orders,
        captured=st.booleans(),
        state=st.sampled_from(STATES),
        stale=st.booleans(),
        reverse=st.booleans(),
    )
    def first_order(self, captured: bool, state: str, stale: bool, reverse: bool) -> str:
        return self._place(captured, state, stale, reverse)

    @initialize(
        target=orders,
        captured=st.booleans(),
        state=st.sampled_from(STATES),
        stale=st.booleans(),
        reverse=st.booleans(),
    )
    def second_order(self, captured: bool, state: str, stale: bool, reverse: bool) -> str:
        return self._place(captured, state, stale, reverse)

    @precondition(lambda self: len(self.refs) < MAX_ORDERS)
    @rule(
        target=orders,
        captured=st.booleans(),
        state=st.sampled_from(STATES),
        stale=st.booleans(),
        reverse=st.booleans(),
    )
    def place_order(self, captured: bool, state: str, stale: bool, reverse: bool) -> str:
        return self._place(captured, state, stale, reverse)

    def _place(self, captured: bool, state: str, stale: bool, reverse: bool) -> str:
        # given an order placed two hours ago, authorized (and maybe captured), at some
        # fulfilment state that the desk heard of recently or long ago
        ref = f"{len(self.refs) + 1:04d}"
        self.refs.append(ref)
        placed = self.clock.now() - timedelta(hours=2)
        self.seq += 1
        docs: list[dict[str, Any]] = [
            {
                "id": f"shopify:{ref}:placed",
                "source": "shopify",
                "type": "order.placed",
                "occurred_at": placed.isoformat(),
                "order": {
                    "ref": ref,
                    "channel": "shopify",
                    "fulfillment_type": "3pl",
                    "value": str(VALUE),
                    "currency": "USD",
                    "placed_at": placed.isoformat(),
                    "customer": {"id": f"c-{ref}", "email": f"c{ref}@example.com"},
                    "lines": [{"sku": s, "qty": q, "price": p} for s, q, p in LINES],
                },
                "data": {},
            }
        ]
        self.placed_at[ref] = placed
        self.fake.authorize(ref, VALUE)
        docs.append(self._event(ref, "payment.authorized", "psp", at=placed + timedelta(minutes=1)))
        if captured and self.fake.capture(ref):
            docs.append(
                self._event(
                    ref,
                    "payment.captured",
                    "psp",
                    at=placed + timedelta(minutes=2),
                    amount=str(VALUE),
                    capture_id=f"ch_{ref}",
                )
            )
        steps = STATES[1 : STATES.index(state) + 1]
        for n, step in enumerate(steps):
            minutes = (40 if stale else 5) - len(steps) + n
            docs.append(
                self._event(ref, f"fulfillment.{step}", "wms", ago=timedelta(minutes=minutes))
            )
        self.fake.warehouse[ref] = state
        if state != "not_released":
            self.fake.released.add(ref)
        self._deliver(*(reversed(docs) if reverse else docs))
        return ref

    @rule(ref=orders, ago=st.sampled_from([0, 30]))
    def capture(self, ref: str, ago: int) -> None:
        # when the storefront captures an authorized payment (the provider refuses a voided one)
        if self.fake.capture(ref):
            amount = str(self.fake.captured[ref])
            event = self._event(
                ref, "payment.captured", "psp", ago=timedelta(minutes=ago), amount=amount
            )
            self._deliver(event)

    @rule(ref=orders, what=st.sampled_from(["next", "ship", "ship_reported_late", "return"]))
    def warehouse_works(self, ref: str, what: str) -> None:
        state = self.fake.warehouse[ref]
        if what == "next":
            # when the warehouse releases, picks or packs an order nobody asked to cancel
            if ref in self.cancel_asked or state not in STATES[:-1]:
                return
            following = STATES[STATES.index(state) + 1]
            self.fake.warehouse[ref] = following
            self.fake.released.add(ref)
            self._deliver(self._event(ref, f"fulfillment.{following}", "wms"))
        elif what.startswith("ship"):
            # when the warehouse ships an order it had (the stop came too late, or was ignored);
            # the carrier's scan may be reported long after it happened
            if state not in STATES[1:]:
                return
            self.fake.warehouse[ref] = "shipped"
            ago = timedelta(minutes=45 if what == "ship_reported_late" else 0)
            self._deliver(
                self._event(ref, "fulfillment.shipped", "wms", ago=ago, tracking=f"1Z{ref}")
            )
        elif state == "shipped":
            self._deliver(self._event(ref, "return.received", "wms"))

    # -- cancel requests ------------------------------------------------------------------------

    @rule(
        ref=orders,
        who=st.sampled_from(["customer", "ops-fraud", "ops-stockout", "auto"]),
        lines=st.sampled_from([None, *PARTIAL]),
        ago=st.sampled_from([0, 10, 90]),
        via_desk=st.booleans(),
    )
    def request_cancel(
        self, ref: str, who: str, lines: str | None, ago: int, via_desk: bool
    ) -> None:
        # when a cancel arrives, from a helpdesk ticket (maybe sent long ago) or from an agent
        requester, _, reason = who.partition("-")
        self.cancel_asked.add(ref)
        picked = PARTIAL[lines] if lines else None
        if via_desk:
            ask = stopship.CancelRequest(
                requested_by=requester,
                reason=reason or None,
                lines=tuple(picked) if picked else None,
                request_id=f"req-{self.seq}",
            )
            self.seq += 1
            code = None
            try:
                with self.desk.uow() as uow:
                    stopship.request_cancellation(
                        uow, self.merchant, ref, ask, actor="ana", now=self.clock.now()
                    )
                    uow.commit()
            except LedgerRefusal as refusal:
                code = refusal.code
            assert code in (None, "already_cancelled", "not_cancellable"), code
            self._keep_up()
            return
        data: dict[str, Any] = {"requested_by": requester}
        if reason:
            data["reason"] = reason
        if picked:
            data["lines"] = [{"sku": s, "qty": q} for s, q in picked]
        self._deliver(
            self._event(ref, "cancel.requested", "helpdesk", ago=timedelta(minutes=ago), **data)
        )

    @precondition(lambda self: bool(self.delivered))
    @rule(pick=st.integers(min_value=0), together=st.booleans())
    def deliver_again(self, pick: int, together: bool) -> None:
        # when a source sends an event it already sent (webhook retry), alone or in a batch
        doc = self.delivered[pick % len(self.delivered)]
        if together:
            self._deliver(doc, doc)
        else:
            self._deliver(doc)

    # -- the warehouse answers a stop ------------------------------------------------------------

    @precondition(lambda self: bool(self.fake.unanswered_stops()))
    @rule(
        data=st.data(),
        how=st.sampled_from(["timely", "late", "late_delivery", "rejected", "missing"]),
    )
    def warehouse_answers(self, data: st.DataObject, how: str) -> None:
        self._answer(data.draw(st.sampled_from(self.fake.unanswered_stops()), label="stop"), how)

    def _answer(self, stop: StopRequest, how: str) -> None:
        ref = stop.order_ref
        if how in ("late", "late_delivery", "missing"):
            # when the acknowledgment window ends with no answer (the desk escalates)
            self._pass(PAST_ANY_ACK_WINDOW)
        if how == "missing":
            stop.answer = "missing"
            return
        if how == "rejected":
            stop.answer = "rejected"
            event = self._event(ref, "stopship.rejected", "wms", message="already packed")
        else:
            # an acknowledgment happens after the stop arrived; it may be reported late
            stop.answer = "acknowledged"
            at = min(stop.at + timedelta(minutes=10), self.clock.now())
            if how == "late":
                at = self.clock.now()
            event = self._event(ref, "stopship.acknowledged", "wms", at=at)
        self._deliver(event)

    # -- money elsewhere and the provider's webhooks ---------------------------------------------

    @rule(
        ref=orders,
        amount=st.sampled_from(["25.00", "50.00", "60.00", "all", "all"]),
        ago=st.booleans(),
    )
    def refund_elsewhere(self, ref: str, amount: str, ago: bool) -> None:
        # when someone refunds in the storefront admin (it refuses more than is left)
        left = self._left_to_refund(ref)
        value = left if amount == "all" else Decimal(amount)
        if value <= ZERO or value > left:
            return
        self.elsewhere[ref] += value
        self.seq += 1
        event = self._event(
            ref,
            "payment.refunded",
            "shopify",
            ago=timedelta(minutes=20 if ago else 0),
            refund_id=f"el-{self.seq}",
            amount=str(value),
        )
        self._deliver(event)

    @precondition(lambda self: any(r.reference not in self.reported for r in self.fake.refunds))
    @rule(data=st.data(), with_intent=st.booleans())
    def provider_webhook(self, data: st.DataObject, with_intent: bool) -> None:
        # when the provider's refund webhook arrives (it says when the refund was made)
        waiting = [r for r in self.fake.refunds if r.reference not in self.reported]
        self._report(data.draw(st.sampled_from(waiting), label="refund"), with_intent=with_intent)

    def _report(self, refund: ProviderRefund, *, with_intent: bool) -> None:
        self.reported.add(refund.reference)
        extra: dict[str, Any] = {"intent": refund.key} if with_intent else {}
        event = self._event(
            refund.order_ref,
            "payment.refunded",
            "psp",
            at=refund.at,
            refund_id=refund.reference,
            amount=str(refund.amount),
            **extra,
        )
        self._deliver(event)

    # -- operators -------------------------------------------------------------------------------

    @rule(
        ref=orders,
        data=st.data(),
        action=st.sampled_from(
            [
                DeskAction.REFUND,
                DeskAction.REFUND,
                DeskAction.VOID,
                DeskAction.RETRY_STEP,
                DeskAction.MARK_CONVERTED,
            ]
        ),
        amount=st.sampled_from(AMOUNTS),
        concession=st.booleans(),
        then=st.sampled_from(["alone", "double_click", "colleague"]),
    )
    def operator_acts(
        self,
        ref: str,
        data: st.DataObject,
        action: DeskAction,
        amount: str,
        concession: bool,
        then: str,
    ) -> None:
        # when an operator refunds, voids, retries the failed step or converts to a return on
        # one of the order's cases; a refund may be clicked twice, or a colleague may refund on
        # the same order at the same moment (before the worker sent the first one)
        cases = self._cases(ref)
        if not cases:
            return
        case_id = data.draw(st.sampled_from(cases), label="case")
        if action is DeskAction.REFUND:
            value = Decimal(amount)
            accepted = self._refund_by_hand(
                ref, case_id, value, concession, in_flight=ZERO, keep_up=then == "alone"
            )
            in_flight = value if accepted else ZERO
            if then == "double_click":
                self._refund_by_hand(ref, case_id, value, concession, in_flight=in_flight)
            elif then == "colleague":
                other = data.draw(st.sampled_from(cases), label="colleague's case")
                more = Decimal(data.draw(st.sampled_from(AMOUNTS), label="colleague's amount"))
                self._refund_by_hand(ref, other, more, concession, in_flight=in_flight)
        elif action is DeskAction.VOID:
            refused = self._act(case_id, CaseAction(action, "fin"))
            if self.fake.captured.get(ref, ZERO) > ZERO:
                # then a captured payment is never voided
                assert refused == "payment_captured", refused
        else:
            self._act(case_id, CaseAction(action, "ana"))

    def _refund_by_hand(
        self,
        ref: str,
        case_id: int,
        value: Decimal,
        concession: bool,
        *,
        in_flight: Decimal,
        keep_up: bool = True,
    ) -> bool:
        """An operator's refund; a new intent beyond what is left (less what another operator
        just asked for) must be refused. True when the desk accepted it."""
        key = intent_key(self.merchant.name, f"case-{case_id}", EntryKind.REFUND, value)
        left = self._left_to_refund(ref) - in_flight
        must_refuse = not self._ledger_has(key) and value > left
        command = CaseAction(DeskAction.REFUND, "fin", amount=value, concession=concession)
        refused = self._act(case_id, command, keep_up=keep_up)
        assert refused or not must_refuse, (
            f"refund of {value} on {ref} accepted with only {left} left (captured "
            f"{self.fake.captured.get(ref)}, provider refunds {self.fake.refunded_by_api(ref)}, "
            f"elsewhere {self.elsewhere[ref]}, asked meanwhile {in_flight})"
        )
        return refused is None

    # -- connectors, workers, time ---------------------------------------------------------------

    @precondition(lambda self: not self.fake.modes and not self.fake.vague_wms)
    @rule(
        group=st.sampled_from(["payments", "payments", "wms", "erp", "messages"]),
        mode=st.sampled_from([REFUSE, DOWN, DOWN]),
        vague=st.booleans(),
    )
    def connector_fails(self, group: str, mode: str, vague: bool) -> None:
        # when a connector starts refusing every command, or cannot be reached at all
        self.fake.modes[group] = mode
        self.fake.vague_wms = vague and group == "wms"

    @precondition(lambda self: bool(self.fake.modes) or self.fake.vague_wms)
    @rule()
    def connector_recovers(self) -> None:
        self.fake.modes.clear()
        self.fake.vague_wms = False
        self._keep_up()

    @rule(span=st.sampled_from([timedelta(minutes=2), timedelta(minutes=20), timedelta(hours=3)]))
    def time_passes(self, span: timedelta) -> None:
        self._pass(span)

    @rule()
    def worker_will_crash(self) -> None:
        # when the next worker to run dies between an outside call and its record
        self.crash_armed = True

    @rule(behind=st.booleans())
    def worker_pace(self, behind: bool) -> None:
        # the worker catches up with every due job, then falls behind (events and requests pile
        # up until it runs again) or keeps up after every step
        self._work()
        self.behind = behind

    @precondition(lambda self: len(self.fake.calls) > self.settled_at_calls + 5)
    @rule()
    def settle(self) -> None:
        # when every connector works again, dead jobs are retried, every webhook arrives and the
        # worker has caught up
        self.settled_at_calls = len(self.fake.calls)
        self.fake.modes.clear()
        self.fake.vague_wms = False
        for _ in range(40):
            with self.desk.uow() as uow:
                dead = uow.jobs.listing(status="dead", limit=500)
                for job in dead:
                    if job["kind"] in WORKFLOW_JOBS:
                        uow.jobs.retry(job["id"], now=self.clock.now())
                uow.commit()
            for refund in self.fake.refunds:
                if refund.reference not in self.reported:
                    self._report(refund, with_intent=False)
            self._work()
            upcoming = self._next_workflow_job()
            if upcoming is None or upcoming - self.clock.now() > timedelta(days=1):
                break
            self.clock.advance_to(upcoming + timedelta(seconds=1))
        # then the ledger tells the truth about every refund the provider made
        with self.desk.reader() as uow:
            entries = {e.key: e for e in uow.ledger.all(self.merchant.id)}
        for refund in self.fake.refunds:
            entry = entries.get(refund.key)
            assert entry is not None, f"provider refund {refund} has no ledger entry"
            assert entry.status in (EntryStatus.SENT, EntryStatus.CONFIRMED), (
                f"provider refund {refund.reference} of {refund.amount} on {refund.order_ref} "
                f"(key {refund.key}) is in the ledger as {entry.status.value} {entry.detail}"
            )
        made = {r.key for r in self.fake.refunds}
        for entry in entries.values():
            if entry.kind is EntryKind.REFUND and entry.status in (
                EntryStatus.SENT,
                EntryStatus.CONFIRMED,
            ):
                assert entry.key in made, f"ledger refund {entry} was never made"

    def _next_workflow_job(self) -> datetime | None:
        kinds = ", ".join(f"'{kind}'" for kind in RETRIED)
        with self.desk.engine.connect() as connection:
            due = connection.execute(
                text(
                    "SELECT min(CASE WHEN status = 'pending' THEN due_at ELSE lease_until END) "
                    f"FROM jobs WHERE status IN ('pending', 'running') AND kind IN ({kinds})"
                )
            ).scalar()
        if due is None:
            return None
        moment = due if isinstance(due, datetime) else datetime.fromisoformat(str(due))
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    # -- the invariants --------------------------------------------------------------------------

    @invariant()
    def money_invariants_hold(self) -> None:
        fake = self.fake
        # the fake's own verdicts: (a) no overdraft asked, (b) no key reused with other
        # parameters, (c) no void of a captured payment, (d) no confirmation before the stop
        assert fake.violations == [], fake.violations
        with self.desk.reader() as uow:
            entries = uow.ledger.all(self.merchant.id)
            workflows = uow.cancellations.all(self.merchant.id)
            views = {ref: uow.orders.get(self.merchant.id, ref) for ref in self.refs}
        for ref in self.refs:
            # (a) what the provider refunded plus what was refunded elsewhere <= captured
            captured = fake.captured.get(ref, ZERO)
            refunded = fake.refunded_by_api(ref) + self.elsewhere[ref]
            assert refunded <= captured, (
                f"order {ref}: {refunded} refunded ({fake.refunded_by_api(ref)} by the desk "
                f"through the provider, {self.elsewhere[ref]} elsewhere) of {captured} captured"
            )
            # (f) the ledger's refunds (reserved, sent or confirmed) never above captured
            view = views[ref]
            held = sum(
                (
                    e.amount
                    for e in entries
                    if e.order_ref == ref and e.kind is EntryKind.REFUND and e.status.holds_money
                ),
                ZERO,
            )
            desk_captured = view.payment.captured if view is not None else ZERO
            assert held <= desk_captured, f"order {ref}: ledger holds {held} of {desk_captured}"
        # (b) one ledger entry per key; every provider refund has its refund entry; one refund
        # per key and per business intent at the provider (a cancellation, whatever its attempt;
        # a case's refund of an amount); one entry per intent in the ledger
        ledger_keys = [e.key for e in entries]
        assert len(ledger_keys) == len(set(ledger_keys)), ledger_keys
        by_key = {e.key: e for e in entries if e.kind is EntryKind.REFUND}
        keys = [r.key for r in fake.refunds]
        assert len(keys) == len(set(keys)), keys
        assert set(keys) <= set(by_key), f"provider refunds without a ledger entry: {fake.refunds}"
        made = Counter(intent_of(by_key[r.key]) for r in fake.refunds)
        assert max(made.values(), default=0) <= 1, f"one intent refunded twice: {made}"
        reserved = Counter(
            intent_of(e)
            for e in entries
            if e.kind is EntryKind.REFUND and (e.cancellation_id is None or e.status.holds_money)
        )
        assert max(reserved.values(), default=0) <= 1, f"one intent reserved twice: {reserved}"
        # (e) at most one open workflow per order
        open_refs = [w.order_ref for w in workflows if w.stage is not Stage.DONE]
        assert len(open_refs) == len(set(open_refs)), open_refs
        # and no job failed with anything but a connector failure
        with self.desk.engine.connect() as connection:
            failures = connection.execute(
                text(
                    "SELECT j.kind, a.error FROM job_attempts a JOIN jobs j ON j.id = a.job_id "
                    "WHERE a.result = 'failed' AND a.error NOT LIKE '%OutsideUnavailable%'"
                )
            ).all()
        assert failures == [], failures


# No shrink phase: each example is a real database run, and shrinking a failure took about five
# minutes; the failing sequence is printed whole (at most 30 steps). Add Phase.shrink to the
# phases to get a minimal one.
StopShipMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=30,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestStopShipMoney = StopShipMachine.TestCase


# -- sequences as plain tests -------------------------------------------------------------------


@contextmanager
def world() -> Iterator[StopShipMachine]:
    machine = StopShipMachine()
    try:
        yield machine
    finally:
        machine.teardown()


def test_a_reserved_refund_is_not_sent_once_the_money_was_refunded_elsewhere() -> None:
    """A sequence too specific for the random walk to hit often (``_why_not_send``'s re-check)."""
    with world() as w:
        # given a captured order of 110.00 whose whole cancellation reserved a refund of 110.00
        # while the payment provider could not be reached
        ref = w._place(captured=True, state="not_released", stale=False, reverse=False)
        w.connector_fails(group="payments", mode=DOWN, vague=False)
        w.request_cancel(ref, who="customer", lines=None, ago=0, via_desk=False)
        # when the storefront admin refunds all 110.00, and then the provider is back
        w.refund_elsewhere(ref, amount="all", ago=False)
        w.connector_recovers()
        w.time_passes(timedelta(minutes=2))
        # then the desk's reserved refund never went out, and its entry says why
        assert w.fake.refunds == []
        with w.desk.reader() as uow:
            (entry,) = uow.ledger.for_order(w.merchant.id, ref)
        assert entry.status is EntryStatus.SKIPPED, entry
        w.money_invariants_hold()


# -- the sequences the state machine found --------------------------------------------------------
#
# Each of these pins a defect the state machine found (now fixed); the docstrings tell what went
# wrong before the fix. They use the same world as the state machine, step by step.


def test_a_refund_made_elsewhere_is_never_taken_for_the_desks_own_and_refunded_again() -> None:
    """Regression, invariant (a): ``domain.ledger.reconcile`` matches a reported refund to a desk
    refund of the same amount (``_same_amount``) even when the report is of a refund made
    elsewhere *before* the desk's refund existed. The desk's sent refund then counts as
    reported, the refund made elsewhere stops counting, and the next cancellation refunds the
    elsewhere amount a second time."""
    with world() as w:
        # given a captured order of 110.00, not released, of which 25.00 was refunded in the
        # storefront admin (the desk heard of it)
        ref = w._place(captured=True, state="not_released", stale=False, reverse=False)
        w.refund_elsewhere(ref, amount="25.00", ago=False)
        # when the customer cancels one bulb (25.00), and then the rest of the order
        w.request_cancel(ref, who="customer", lines="BULB", ago=0, via_desk=False)
        w.request_cancel(ref, who="customer", lines=None, ago=0, via_desk=False)
        # then the desk refunded 25.00 for the bulb and only the 60.00 left for the rest
        # (today: 85.00, so 135.00 of 110.00 captured were refunded)
        assert [r.amount for r in w.fake.refunds] == [Decimal("25.00"), Decimal("60.00")]
        w.money_invariants_hold()


def test_a_refund_whose_answer_a_crash_lost_is_booked_as_the_desks_refund() -> None:
    """The worker dies after the provider made a refund and before the answer is recorded; the
    provider's webhook arrives before the job runs again. Connectors send the idempotency key in
    the provider's metadata, so the webhook names the intent: the ledger books the refund as the
    desk's own and the job does not send it again."""
    with world() as w:
        # given a captured order with a cancel request for one bulb (its case is the desk's)
        ref = w._place(captured=True, state="not_released", stale=False, reverse=False)
        w.request_cancel(ref, who="customer", lines="BULB", ago=0, via_desk=False)
        case_id = w._cases(ref)[0]
        # when finance refunds 50.00 and the worker dies between the provider's answer and
        # recording it
        w.worker_will_crash()
        w._refund_by_hand(ref, case_id, Decimal("50.00"), False, in_flight=ZERO)
        assert w.crashes == 1
        lost = w.fake.refunds[-1]
        # and the provider's webhook for that refund (naming the intent) arrives, then the job
        # runs again
        w._report(lost, with_intent=True)
        w.time_passes(timedelta(minutes=2))
        # then the ledger shows that refund as the desk's, with the provider's reference, and
        # the provider made it once (the repeat carried the same key)
        with w.desk.reader() as uow:
            entry = uow.ledger.by_key(w.merchant.id, lost.key)
        assert entry is not None
        assert (entry.status, entry.reference) in (
            (EntryStatus.SENT, lost.reference),
            (EntryStatus.CONFIRMED, lost.reference),
        ), (entry.status, entry.reference, entry.detail)
        assert [r.key for r in w.fake.refunds].count(lost.key) == 1


def test_a_crash_lost_refund_reported_without_its_intent_is_found_by_its_key() -> None:
    """The same crash, with a report that does not name the intent (a provider without
    metadata): on its own the desk cannot tell it from a refund made elsewhere. The retried send
    does not refund again: it asks the provider for a refund made under its key, finds it, and
    books it as the desk's."""
    with world() as w:
        ref = w._place(captured=True, state="not_released", stale=False, reverse=False)
        w.request_cancel(ref, who="customer", lines="BULB", ago=0, via_desk=False)
        case_id = w._cases(ref)[0]
        w.worker_will_crash()
        w._refund_by_hand(ref, case_id, Decimal("50.00"), False, in_flight=ZERO)
        lost = w.fake.refunds[-1]
        w._report(lost, with_intent=False)
        w.time_passes(timedelta(minutes=2))
        with w.desk.reader() as uow:
            entry = uow.ledger.by_key(w.merchant.id, lost.key)
        assert entry is not None
        assert (entry.status, entry.reference) == (EntryStatus.SENT, lost.reference)
        assert [r.key for r in w.fake.refunds].count(lost.key) == 1
        assert [c.action for c in w.fake.calls].count("refund_lookup") == 1


def test_a_new_cancellation_waits_for_its_own_stop_to_be_acknowledged() -> None:
    """Regression, invariant (d): a second cancellation of an order (after a first, partial one
    was acknowledged and done) whose request was written before that acknowledgment takes the
    old acknowledgment as its own: ``services.stopship._start`` replays every earlier
    ``stopship.acknowledged`` of the order into the new workflow and
    ``Cancellation.observe`` accepts any answer not older than the request. The new workflow
    goes straight to ``stopped`` without ever sending its hold and cancel to the warehouse,
    refunds, and tells the customer the lines are cancelled; the warehouse ships them."""
    with world() as w:
        # given a captured order at the warehouse (released); the customer cancels the lamp,
        # the warehouse acknowledges that stop ten minutes later, and it is done
        ref = w._place(captured=True, state="released", stale=False, reverse=False)
        w.request_cancel(ref, who="customer", lines="LAMP", ago=0, via_desk=False)
        w.time_passes(timedelta(minutes=20))
        (first_stop,) = w.fake.unanswered_stops()
        w._answer(first_stop, "timely")
        assert [t for _, t, _ in w.fake.messages] == ["partial_cancellation_confirmed"]
        # when a ticket asking to cancel the bulbs, written an hour and a half ago, arrives now
        w.time_passes(timedelta(minutes=20))
        w.request_cancel(ref, who="customer", lines="BULBS", ago=90, via_desk=False)
        # then the warehouse is asked to stop the bulbs, and nobody is told they are cancelled
        # before it acknowledges that stop
        assert len(w.fake.stops) == 2, w.fake.stops
        assert w.fake.violations == []
        w.money_invariants_hold()


def test_an_authorization_is_not_released_after_the_payment_was_captured() -> None:
    """Regression, invariant (c): a partial cancel of an authorized-only order reserves a
    ``reduce_authorization``; the provider is unreachable, so the send is retried later; the
    payment is captured meanwhile (the desk ingests the capture). The retry still sends the
    release of authorization: ``services.stopship._why_not_send`` re-checks only refunds against
    the balance, never voids or reductions. (A whole-order void reserved before a capture goes
    out the same way.) The provider refuses it, so the cancellation ends in exception."""
    with world() as w:
        # given an authorized, not captured order of 110.00, not released
        ref = w._place(captured=False, state="not_released", stale=False, reverse=False)
        # when the customer cancels one bulb while the payment provider cannot be reached
        w.connector_fails(group="payments", mode=DOWN, vague=False)
        w.request_cancel(ref, who="customer", lines="BULB", ago=0, via_desk=False)
        # and the storefront captures the payment before the provider is back
        w.capture(ref, ago=0)
        w.connector_recovers()
        w.time_passes(timedelta(minutes=2))
        # then no void or release of authorization was sent for the captured payment (the spec:
        # "refund if captured")
        assert w.fake.violations == []
