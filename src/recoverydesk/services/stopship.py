"""The stop-ship workflow and the refund ledger at work: intake, jobs, and what operators do.

- Intake (``on_intake``): a ``cancel.requested`` from any source starts a workflow for its order,
  or joins the open one; a warehouse answer is recorded on it; any new event of an order with
  an open workflow asks for an ``advance``.
- ``stopship.advance`` (a job): the workflow moves as far as the facts allow
  (``domain.stopship``). Each command it plans is written as an ``outbound.send`` job in the same
  transaction (an outbox), and a payment command first reserves its amount in the ledger under
  the order's lock, so a concurrent request sees the reduced balance.
- ``outbound.send`` (a job, ``OutsideStep``): the call is made outside any transaction, with the
  command's idempotency key; its answer is logged, settles the ledger entry and advances the
  workflow. A repeat after a crash is the same call with the same key.
- ``stopship.ack_due``: the acknowledgment window ended; the workflow decides (``exception``).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog

from recoverydesk.domain.cases import Case, Category
from recoverydesk.domain.errors import NotFound
from recoverydesk.domain.events import CanonicalEvent, EventSource, EventType, OrderFacts
from recoverydesk.domain.ledger import (
    Balance,
    EntryKind,
    EntryStatus,
    LedgerEntry,
    LedgerRefusal,
    check_refund,
    check_void,
    intent_key,
    reconcile,
)
from recoverydesk.domain.money import ZERO
from recoverydesk.domain.orders import OrderView
from recoverydesk.domain.stopship import (
    ACTOR,
    Branch,
    Cancellation,
    Command,
    FinalOutcome,
    Stage,
    StopShipRules,
)
from recoverydesk.domain.triage import Priority
from recoverydesk.services.canonical import event_to_dict, parse_event
from recoverydesk.services.jobs import JobHandler
from recoverydesk.services.merchants import connectors_of
from recoverydesk.services.ports import (
    IncomingEvent,
    Job,
    JobRequest,
    Merchant,
    OutsideAnswer,
    OutsideCommand,
    OutsideSystems,
    UnitOfWork,
)
from recoverydesk.services.triage import Triage, triage_for

log = structlog.get_logger("recoverydesk.stopship")

ADVANCE = "stopship.advance"
ACK_DUE = "stopship.ack_due"
SEND = "outbound.send"
ANSWERS = frozenset({EventType.STOPSHIP_ACKNOWLEDGED, EventType.STOPSHIP_REJECTED})


def rules_for(triage: Triage) -> StopShipRules:
    settings = triage.policy.stopship
    return StopShipRules(
        ack_window_picking=settings.ack_window_picking,
        ack_window_packed=settings.ack_window_packed,
        state_fresh_for=settings.state_fresh_for,
        convert_shipped=settings.convert_shipped_to_return,
        refund_on=settings.refund_on,
        intercept_carriers=frozenset(c.lower() for c in settings.intercept_carriers),
        working_add=triage.calendar.add,
    )


# -- intake ----------------------------------------------------------------------------------


def on_intake(
    uow: UnitOfWork,
    merchant: Merchant,
    *,
    orders: dict[str, OrderView],
    fresh: Sequence[CanonicalEvent],
    cases: Sequence[Case],
    now: datetime,
    known: Collection[str] | None = None,
) -> None:
    """Start, join and inform workflows from a batch of new events (inside intake's unit of
    work, after its cases are saved). ``known``: the orders the desk had seen before this batch
    (the others cannot have a workflow yet); None when unknown."""
    by_order: dict[str, list[CanonicalEvent]] = defaultdict(list)
    for event in sorted(fresh, key=lambda e: e.sort_key):
        by_order[event.order.ref].append(event)
    wanted = sorted(ref for ref in by_order if known is None or ref in known)
    open_now = uow.cancellations.open_for_orders(merchant.id, wanted)
    for ref, events in by_order.items():
        workflow = open_now.get(ref)
        for event in events:
            if event.type is EventType.CANCEL_REQUESTED:
                if workflow is None:
                    workflow = _start(
                        uow, merchant, order=orders[ref], event=event, cases=cases, now=now
                    )
                else:
                    workflow.join(event, now)
            elif event.type in ANSWERS and workflow is not None:
                workflow.observe(event, now)
        if workflow is not None:
            _persist(uow, merchant, workflow, now)
            uow.jobs.enqueue([_advance_job(merchant, workflow, now)], now=now)


def _start(
    uow: UnitOfWork,
    merchant: Merchant,
    *,
    order: OrderView,
    event: CanonicalEvent,
    cases: Sequence[Case],
    now: datetime,
) -> Cancellation | None:
    if order.cancelled:
        return None
    workflow = Cancellation.request(event, order, merchant_id=merchant.id, now=now)
    workflow.case_id = next(
        (
            case.id
            for case in cases
            if case.category == Category.CHANGE_REQUEST and event.id in case.event_ids
        ),
        None,
    )
    used = {
        answer
        for done in uow.cancellations.for_order(merchant.id, order.ref)
        for answer in (done.acknowledged_by, done.rejected_by)
        if answer is not None
    }
    history = uow.events.history(merchant.id, [order.ref]).get(order.ref, [])
    for earlier in sorted(history, key=lambda e: e.sort_key):
        if earlier.type in ANSWERS and earlier.id not in used:
            workflow.observe(earlier, now)  # an answer that arrived before the request did
    uow.cancellations.save(merchant.id, workflow, now=now)
    log.info("stop-ship started", merchant=merchant.name, order_ref=order.ref, id=workflow.id)
    return workflow


def _advance_job(merchant: Merchant, workflow: Cancellation, now: datetime) -> JobRequest:
    return JobRequest(
        merchant_id=merchant.id,
        kind=ADVANCE,
        key=f"stopship:{merchant.id}:{workflow.id}:advance:v{workflow.version}",
        due_at=now,
        payload={"cancellation_id": workflow.id},
    )


# -- the workflow ----------------------------------------------------------------------------


def advance(uow: UnitOfWork, job: Job, now: datetime) -> None:
    merchant = _merchant_of(uow, job)
    workflow = lock_workflow(uow, merchant, int(job.payload["cancellation_id"]))
    if workflow is None or not workflow.is_open:
        return
    move(uow, merchant, workflow, now)


def lock_workflow(uow: UnitOfWork, merchant: Merchant, cancellation_id: int) -> Cancellation | None:
    """Lock a workflow the way every path does: its order first, then the workflow, then (when
    saving) its case. Intake locks orders before anything else; one order keeps them from
    deadlocking each other."""
    seen = uow.cancellations.get(merchant.id, cancellation_id)
    if seen is None:
        return None
    uow.orders.lock(merchant.id, [seen.order_ref])
    return uow.cancellations.lock(merchant.id, cancellation_id)


def move(uow: UnitOfWork, merchant: Merchant, workflow: Cancellation, now: datetime) -> None:
    """Advance a locked workflow, write its commands to the outbox and save it."""
    triage = triage_for(uow, merchant)
    rules = rules_for(triage)
    order = uow.orders.lock(merchant.id, [workflow.order_ref])[workflow.order_ref]
    before = workflow.stage
    jobs: list[JobRequest] = []
    for _ in range(4):  # a refused reservation is an answer: the workflow moves on it
        money = _balance(uow, merchant, order, now)
        refused = False
        for command in workflow.advance(order, money, rules, now):
            if command.is_payment:
                try:
                    _reserve(
                        uow,
                        merchant,
                        order=order,
                        money=money,
                        command=command,
                        workflow=workflow,
                        now=now,
                    )
                except LedgerRefusal as refusal:
                    answer = {"code": refusal.code, "message": refusal.message}
                    workflow.answered(command.key, accepted=False, answer=answer, at=now)
                    refused = True
                    continue
            jobs.append(_send_job(merchant, workflow, command, now))
        if not refused:
            break
    if workflow.stage is Stage.STOPPING and workflow.ack_due_at is not None:
        jobs.append(
            JobRequest(
                merchant.id,
                ACK_DUE,
                f"stopship:{merchant.id}:{workflow.id}:ack-due:{workflow.attempt}",
                workflow.ack_due_at,
                {"cancellation_id": workflow.id},
            )
        )
    uow.jobs.enqueue(jobs, now=now)
    _persist(
        uow, merchant, workflow, now, entered=workflow.stage if before != workflow.stage else None
    )
    _announce_outcome(uow, merchant, workflow, now)


def _balance(uow: UnitOfWork, merchant: Merchant, order: OrderView, now: datetime) -> Balance:
    money, changed = reconcile(order, uow.ledger.for_order(merchant.id, order.ref))
    uow.ledger.update(merchant.id, changed, now=now)
    return money


def _reserve(
    uow: UnitOfWork,
    merchant: Merchant,
    *,
    order: OrderView,
    money: Balance,
    command: Command,
    workflow: Cancellation,
    now: datetime,
) -> LedgerEntry:
    existing = uow.ledger.by_key(merchant.id, command.key)
    if existing is not None:
        return existing
    kind, amount = EntryKind(command.action), Decimal(str(command.params["amount"]))
    _check(kind, money, amount)
    entry = LedgerEntry(
        order_ref=order.ref,
        kind=kind,
        key=command.key,
        amount=amount,
        currency=str(command.params["currency"]),
        actor=ACTOR,
        created_at=now,
        case_id=workflow.case_id,
        cancellation_id=workflow.id,
    )
    return uow.ledger.reserve(merchant.id, entry)


def _check(kind: EntryKind, money: Balance, amount: Decimal) -> None:
    if kind is EntryKind.REFUND:
        check_refund(money, amount)
    elif kind is EntryKind.VOID:
        check_void(money)
    elif amount > money.authorized or money.captured > 0:
        raise LedgerRefusal(
            f"cannot release {amount} of an authorization of {money.authorized} "
            f"(captured {money.captured})",
            code="cannot_reduce_authorization",
        )


def _send_job(
    merchant: Merchant, workflow: Cancellation | None, command: Command, now: datetime
) -> JobRequest:
    return JobRequest(
        merchant_id=merchant.id,
        kind=SEND,
        key=f"outbound:{command.key}",
        due_at=now,
        payload={
            "cancellation_id": workflow.id if workflow else None,
            "order_ref": workflow.order_ref if workflow else None,
            "system": command.system,
            "action": command.action,
            "key": command.key,
            "params": command.params,
        },
    )


def _persist(
    uow: UnitOfWork,
    merchant: Merchant,
    workflow: Cancellation,
    now: datetime,
    entered: Stage | None = None,
) -> None:
    """Save the workflow and put its new notes on its case's timeline; a workflow that just
    went into ``exception`` escalates its case, a packed order's stop raises it to P2."""
    uow.cancellations.save(merchant.id, workflow, now=now)
    notes, workflow.notes = workflow.notes, []
    case = uow.cases.lock(merchant.id, workflow.case_id) if workflow.case_id else None
    if case is None:
        return
    for note in notes:
        case.record(note.at, note.kind, ACTOR, {"cancellation": workflow.id, **note.detail})
    requests: list[JobRequest] = []
    if entered is Stage.EXCEPTION:
        _raise_priority(case, Priority.P1, now, "stop-ship exception")
        requests += _escalate(uow, merchant, case, workflow, now)
    elif workflow.branch is Branch.PACKED:
        _raise_priority(case, Priority.P2, now, "packed: the hold may fail")
    if case.dirty:
        uow.cases.save(merchant.id, [case])
    uow.jobs.enqueue(requests, now=now)


def _raise_priority(case: Case, priority: Priority, now: datetime, why: str) -> None:
    current = Priority(case.priority) if case.priority in set(Priority) else None
    if current is not None and current.rank <= priority.rank:
        return
    case.record(
        now, "priority_raised", ACTOR, {"from": case.priority, "to": priority.value, "why": why}
    )
    case.priority = priority.value


def _escalate(
    uow: UnitOfWork, merchant: Merchant, case: Case, workflow: Cancellation, now: datetime
) -> list[JobRequest]:
    from recoverydesk.services.escalation import escalate_to_lead

    record = {
        "key": f"esc:{merchant.name}:{case.id}:stopship:{workflow.id}:{workflow.attempt}",
        "clock": "stopship",
        "stage": "exception",
        "due_at": (workflow.ack_due_at or now).isoformat(),
        "fired_at": now.isoformat(),
        "reason": workflow.exception_reason or "",
    }
    return escalate_to_lead(merchant, triage_for(uow, merchant), case, record)


def _announce_outcome(
    uow: UnitOfWork, merchant: Merchant, workflow: Cancellation, now: datetime
) -> None:
    """A final outcome is an event (``stopship.finished``): it cancels the order (or its
    lines) in the order 360 and closes the cancel request's case. Its id is deterministic."""
    at = workflow.times.get("final_outcome_at")
    if at is None or workflow.outcome in (None, FinalOutcome.EXCEPTION):
        return
    assert workflow.outcome is not None
    data: dict[str, Any] = {
        "outcome": workflow.outcome.value,
        "reason_code": workflow.reason_code.value,
        "cancellation": workflow.id,
        "requested_by": workflow.requested_by.value,
    }
    if workflow.lines is not None:
        data["lines"] = [{"sku": s, "qty": q} for s, q in sorted(workflow.lines.items())]
    event_id = f"desk:stopship:{workflow.id}:finished"
    if (at, event_id) <= (workflow.requested_at, workflow.request_event):
        # Events fold by (occurred_at, id): an outcome decided at the request's own instant
        # must still fold after the request, or it cannot close the case the request opened.
        at = workflow.requested_at + timedelta(microseconds=1)
    draft = CanonicalEvent(
        id=event_id,
        source=EventSource.DESK,
        type=EventType.STOPSHIP_FINISHED,
        occurred_at=at,
        order=OrderFacts(ref=workflow.order_ref),
        data=data,
    )
    from recoverydesk.services.intake import ingest_within

    event = parse_event(event_to_dict(draft))
    raw = json.dumps(event_to_dict(event))
    ingest_within(uow, merchant=merchant, events=[IncomingEvent(event, raw)], now=now)


def _merchant_of(uow: UnitOfWork, job: Job) -> Merchant:
    merchant = uow.merchants.by_id(job.merchant_id)
    if merchant is None:
        raise NotFound(f"merchant {job.merchant_id} of job {job.id} is gone")
    return merchant


# -- outbound calls --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Skip:
    """Why a payment is not sent after all; ``code`` answers the workflow with a refusal it
    plans around (a void of what was captured meanwhile becomes a refund ...)."""

    why: str
    code: str | None = None
    ask_first: bool = False  # a retried refund: ask the provider whether it made it already


LOOKUP = "refund_lookup"


@dataclass(frozen=True, slots=True)
class Prepared:
    command: OutsideCommand
    skip: Skip | None


class SendOutside:
    """``outbound.send``: one command to an outside system (an ``OutsideStep``)."""

    def __init__(self, outside: OutsideSystems) -> None:
        self._outside = outside

    def prepare(self, uow: UnitOfWork, job: Job, now: datetime) -> Prepared:
        p = job.payload
        merchant = _merchant_of(uow, job)
        ref = p.get("order_ref")
        order = uow.orders.get(merchant.id, str(ref)) if ref else None
        connection = connectors_of(uow, merchant).outbound.get(str(p["system"]))
        command = OutsideCommand(
            merchant_id=job.merchant_id,
            order_ref=ref,
            system=str(p["system"]),
            action=str(p["action"]),
            key=str(p["key"]),
            params=dict(p["params"]),
            connection=connection.resolved(os.environ) if connection else {},
            order_ids=dict(order.system_ids) if order else {},
        )
        skip = _why_not_send(uow, command)
        if skip is not None and skip.code == "refunded_elsewhere" and job.attempts > 1:
            skip = Skip(skip.why, skip.code, ask_first=True)
        return Prepared(command, skip)

    def call(self, prepared: Prepared) -> OutsideAnswer | None:
        skip = prepared.skip
        if skip is not None and skip.ask_first:
            found = self._outside.send(_lookup(prepared.command))
            if not (found.accepted and found.reference):
                return None  # the provider made none: it was refunded elsewhere
            return OutsideAnswer(True, reference=found.reference, facts={"found_by_lookup": True})
        if skip is not None:
            return None
        return self._outside.send(prepared.command)

    def record(
        self,
        uow: UnitOfWork,
        job: Job,
        prepared: Prepared,
        result: OutsideAnswer | None,
        now: datetime,
    ) -> None:
        command = prepared.command
        merchant = _merchant_of(uow, job)
        if result is None:
            skip = prepared.skip or Skip("not sent")
            answer = {"skipped": skip.why, "code": skip.code, "reference": None}
            accepted = skip.code is None
        else:
            answer = {"reference": result.reference, "message": result.message, **result.facts}
            accepted = result.accepted
            uow.outbound.record(
                merchant.id,
                order_ref=command.order_ref,
                system=command.system,
                action=command.action,
                key=command.key,
                params=command.params,
                result="accepted" if accepted else "refused",
                answer=_jsonable(answer),
                at=now,
            )
        why = prepared.skip.why if prepared.skip else None
        entry = _settle(uow, merchant, command=command, result=result, skip=why, now=now)
        workflow_id = job.payload.get("cancellation_id")
        if workflow_id is not None:
            workflow = lock_workflow(uow, merchant, int(workflow_id))
            if workflow is not None:
                workflow.answered(command.key, accepted=accepted, answer=answer, at=now)
                move(uow, merchant, workflow, now)
        elif entry is not None:
            _note_payment(uow, merchant, entry, answer, now)
        if job.payload.get("playbook"):
            from recoverydesk.services.playbooks import on_answer

            on_answer(uow, merchant, job.payload, accepted=accepted, answer=answer, now=now)


def _lookup(command: OutsideCommand) -> OutsideCommand:
    """Ask the provider for the refund it made under this idempotency key, if any: an earlier
    attempt may have reached it before a crash lost the answer, and the provider's report of
    it (without the intent) now reads as a refund made elsewhere."""
    return replace(
        command,
        action=LOOKUP,
        key=f"lookup:{command.key}",
        params={"intent": command.key, **command.params},
    )


def _why_not_send(uow: UnitOfWork, command: OutsideCommand) -> Skip | None:
    """A payment goes out only while its reservation is pending and the order's money still
    allows it: a void or a release only while nothing is captured; a refund only while it fits
    what is left, so a refund reported elsewhere since the reservation is never repeated (even
    on a retry: the desk cannot tell a failed attempt that never reached the provider from one
    whose answer a crash lost; connectors send the key in the provider's metadata, so the
    provider's report of a desk refund names its intent and confirms the entry instead)."""
    if command.action not in {kind.value for kind in EntryKind}:
        return None
    entry = uow.ledger.by_key(command.merchant_id, command.key)
    if entry is None:
        return Skip("no reservation in the ledger", "no_reservation")
    if entry.status is not EntryStatus.PENDING:
        return Skip(f"already {entry.status.value}")
    return _money_forbids(uow, command.merchant_id, entry)


def _money_forbids(uow: UnitOfWork, merchant_id: int, entry: LedgerEntry) -> Skip | None:
    order = uow.orders.get(merchant_id, entry.order_ref) or OrderView(ref=entry.order_ref)
    if entry.kind is not EntryKind.REFUND:
        if order.payment.captured > ZERO:
            return Skip("captured meanwhile: a captured payment is refunded", "payment_captured")
        return None
    money, _ = reconcile(order, uow.ledger.for_order(merchant_id, entry.order_ref))
    available = money.captured - money.refunded - (money.pending - entry.amount)
    if entry.amount > available:
        why = f"refunded elsewhere meanwhile ({money.refunded_elsewhere} elsewhere)"
        return Skip(why, "refunded_elsewhere")
    return None


def _settle(
    uow: UnitOfWork,
    merchant: Merchant,
    *,
    command: OutsideCommand,
    result: OutsideAnswer | None,
    skip: str | None,
    now: datetime,
) -> LedgerEntry | None:
    if command.action not in {kind.value for kind in EntryKind}:
        return None
    entry = uow.ledger.by_key(merchant.id, command.key)
    if entry is None or entry.status is not EntryStatus.PENDING:
        return entry
    if result is None:
        entry.status, entry.detail = EntryStatus.SKIPPED, {"why": skip or ""}
    else:
        entry.status = EntryStatus.SENT if result.accepted else EntryStatus.REFUSED
        entry.reference = result.reference
        if result.message:
            entry.detail = {"message": result.message}
    uow.ledger.update(merchant.id, [entry], now=now)
    return entry


def _note_payment(
    uow: UnitOfWork, merchant: Merchant, entry: LedgerEntry, answer: dict[str, Any], now: datetime
) -> None:
    """A payment action taken by hand goes on its case's timeline with actor, amount, the
    provider's reference and the result."""
    case = uow.cases.lock(merchant.id, entry.case_id) if entry.case_id else None
    if case is None:
        return
    case.record(
        now,
        "payment_action",
        entry.actor,
        {
            "action": entry.kind.value,
            "amount": str(entry.amount),
            "currency": entry.currency,
            "reference": entry.reference,
            "result": entry.status.value,
            "idempotency_key": entry.key,
            **{k: v for k, v in _jsonable(answer).items() if k == "message" and v},
        },
    )
    uow.cases.save(merchant.id, [case])


def _jsonable(answer: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(answer, default=str))  # type: ignore[no-any-return]


# -- what operators do -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CancelRequest:
    requested_by: str = "customer"
    reason: str | None = None
    lines: tuple[tuple[str, int], ...] | None = None
    request_id: str | None = None  # the caller's idempotency key for the request


def request_cancellation(
    uow: UnitOfWork,
    merchant: Merchant,
    ref: str,
    request: CancelRequest,
    *,
    actor: str,
    now: datetime,
) -> tuple[Cancellation, bool]:
    """``POST /orders/{ref}/cancellations``: a desk ``cancel.requested`` event, ingested as
    any other (so it joins an open workflow). Returns the workflow and whether it is new."""
    from recoverydesk.services.intake import ingest_within

    order = uow.orders.get(merchant.id, ref)
    if order is None:
        raise NotFound(f"no order {ref!r}", code="order_not_found")
    if order.cancelled:
        raise LedgerRefusal(f"order {ref} is already cancelled", code="already_cancelled")
    before = uow.cancellations.open_for_order(merchant.id, ref)
    data: dict[str, Any] = {"requested_by": request.requested_by, "actor": actor}
    if request.reason:
        data["reason"] = request.reason
    if request.lines:
        data["lines"] = [{"sku": sku, "qty": qty} for sku, qty in request.lines]
    suffix = request.request_id or f"{now.isoformat()}:{actor}"
    draft = CanonicalEvent(
        id=f"desk:cancel:{ref}:{suffix}",
        source=EventSource.DESK,
        type=EventType.CANCEL_REQUESTED,
        occurred_at=now,
        order=OrderFacts(ref=ref),
        data=data,
    )
    event = parse_event(event_to_dict(draft))
    ingest_within(
        uow,
        merchant=merchant,
        events=[IncomingEvent(event, json.dumps(event_to_dict(event)))],
        now=now,
    )
    workflow = uow.cancellations.open_for_order(merchant.id, ref)
    if workflow is None:
        raise LedgerRefusal(f"order {ref} could not start a cancellation", code="not_cancellable")
    return workflow, before is None or before.id != workflow.id


def open_workflow_of_case(uow: UnitOfWork, merchant: Merchant, case: Case) -> Cancellation:
    uow.orders.lock(merchant.id, [case.order_ref])  # the order first, as every path does
    workflow = uow.cancellations.open_for_order(merchant.id, case.order_ref)
    if workflow is None:
        raise LedgerRefusal(
            f"order {case.order_ref} has no open cancellation", code="no_open_cancellation"
        )
    return workflow


def retry_step(
    uow: UnitOfWork, merchant: Merchant, case: Case, *, actor: str, now: datetime
) -> Cancellation:
    workflow = open_workflow_of_case(uow, merchant, case)
    workflow.retry(now, actor)
    move(uow, merchant, workflow, now)
    return workflow


def mark_converted(
    uow: UnitOfWork, merchant: Merchant, case: Case, *, actor: str, now: datetime
) -> Cancellation:
    workflow = open_workflow_of_case(uow, merchant, case)
    workflow.mark_converted(now, actor)
    move(uow, merchant, workflow, now)
    return workflow


def pay_by_hand(
    uow: UnitOfWork,
    merchant: Merchant,
    case: Case,
    *,
    kind: EntryKind,
    amount: Decimal | None,
    concession: bool,
    actor: str,
    now: datetime,
) -> tuple[LedgerEntry, bool]:
    """A void or refund an operator asked for on a case: checked against the ledger under the
    order's lock, reserved, and sent by the outbox. The same intent (case, action, amount) asked
    twice gives the first entry back (``False``: not new)."""
    order = uow.orders.lock(merchant.id, [case.order_ref])[case.order_ref]
    money = _balance(uow, merchant, order, now)
    if kind is EntryKind.VOID:
        check_void(money)
        amount = money.authorized
    assert amount is not None
    key = intent_key(merchant.name, f"case-{case.id}", kind, amount)
    existing = uow.ledger.by_key(merchant.id, key)
    if existing is not None:
        return existing, False
    if kind is EntryKind.REFUND:
        _refuse_leak(order, concession)
        check_refund(money, amount)
    entry = LedgerEntry(
        order_ref=order.ref,
        kind=kind,
        key=key,
        amount=amount,
        currency=order.currency or "USD",
        actor=actor,
        created_at=now,
        case_id=case.id,
        detail={"concession": "yes"} if concession else {},
    )
    uow.ledger.reserve(merchant.id, entry)
    command = Command(
        kind.value, "payments", kind.value, key, {"amount": str(amount), "currency": entry.currency}
    )
    job = _send_job(merchant, None, command, now)
    payload = {**job.payload, "order_ref": order.ref}
    uow.jobs.enqueue([JobRequest(job.merchant_id, job.kind, job.key, job.due_at, payload)], now=now)
    case.record(
        now,
        "payment_requested",
        actor,
        {
            "action": kind.value,
            "amount": str(amount),
            "currency": entry.currency,
            "idempotency_key": key,
        },
    )
    return entry, True


def _refuse_leak(order: OrderView, concession: bool) -> None:
    """A refund on an order that still ships, with no return in flight, is refund leakage."""
    if not order.shipped or concession or order.cancelled:
        return
    seen = order.evidence
    if seen.returned_by or seen.return_in_flight_by:
        return
    raise LedgerRefusal(
        f"order {order.ref} shipped and no return is in flight: a refund now is refund "
        "leakage (send concession=true to record it as a concession)",
        code="refund_would_leak",
    )


def handlers(outside: OutsideSystems) -> dict[str, JobHandler]:
    return {ADVANCE: advance, ACK_DUE: advance, SEND: SendOutside(outside)}
