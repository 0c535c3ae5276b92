"""What people do on a case from the desk: acknowledge, note, assign, wait on someone, resume.

Each action is one unit of work: the case changes, its timeline rows, its clocks (the first
touch stops the first-touch clock; waiting on the customer pauses the SLA clocks, never the
operational one) and the timers for the clocks' next stages are written together.
Payment actions (void, refund) go through the refund ledger (``services.stopship``): checked
under the order's lock, reserved, then sent by the outbox; ``retry_step`` and ``mark_converted``
act on the order's open stop-ship workflow. Each is refused with its own error code when the
ledger or the workflow's state forbids it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from recoverydesk.domain.cases import Case, CaseStatus
from recoverydesk.domain.errors import InvalidInput, InvalidTransition, NotFound
from recoverydesk.domain.ledger import EntryKind
from recoverydesk.domain.orders import OrderView
from recoverydesk.services import stopship
from recoverydesk.services.ports import Merchant, UnitOfWork
from recoverydesk.services.triage import stage_timers, triage_for


class DeskAction(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    NOTE = "note"
    ASSIGN = "assign"
    WAIT_CUSTOMER = "wait_customer"
    WAIT_PARTNER = "wait_partner"
    RESUME = "resume"
    VOID = "void"
    REFUND = "refund"
    RETRY_STEP = "retry_step"
    MARK_CONVERTED = "mark_converted"


MONEY_ACTIONS = frozenset({DeskAction.VOID, DeskAction.REFUND})
WORKFLOW_ACTIONS = frozenset({DeskAction.RETRY_STEP, DeskAction.MARK_CONVERTED})


@dataclass(frozen=True, slots=True)
class CaseAction:
    action: DeskAction
    actor: str
    note: str | None = None
    owner: str | None = None
    amount: Decimal | None = None
    concession: bool = False


def act_on_case(
    uow: UnitOfWork, *, merchant: Merchant, case_id: int, command: CaseAction, now: datetime
) -> Case:
    if command.action in MONEY_ACTIONS | WORKFLOW_ACTIONS:
        return _act_on_money(uow, merchant, case_id, command, now)
    case = uow.cases.lock(merchant.id, case_id)
    if case is None:
        raise NotFound(f"no case {case_id}", code="case_not_found")
    if not case.is_open:
        raise InvalidTransition(f"case {case_id} is {case.status.value}: reopen it first")
    triage = triage_for(uow, merchant)
    _apply(case, command, now, set(triage.members()))
    order = uow.orders.get(merchant.id, case.order_ref) or OrderView(ref=case.order_ref)
    triage.keep_clocks(case, order, now)
    uow.cases.save(merchant.id, [case])
    uow.jobs.enqueue(stage_timers(merchant.id, case, triage.calendar), now=now)
    return case


def _apply(case: Case, command: CaseAction, now: datetime, members: set[str]) -> None:
    actor = command.actor
    if command.action is DeskAction.ASSIGN:
        if command.owner is not None and command.owner not in members:
            known = ", ".join(sorted(members)) or "none configured"
            raise InvalidInput(f"no member {command.owner!r} (members: {known})")
        case.assign(command.owner, at=now, actor=actor, reason="assigned by hand")
        return
    case.touch(at=now, actor=actor)
    if command.note:
        case.record(now, "note", actor, {"text": command.note})
    target = {
        DeskAction.WAIT_CUSTOMER: CaseStatus.WAITING_CUSTOMER,
        DeskAction.WAIT_PARTNER: CaseStatus.WAITING_PARTNER,
        DeskAction.RESUME: CaseStatus.IN_PROGRESS,
    }.get(command.action)
    if target is not None and case.status is not target:
        case.move_to(target, at=now, actor=actor, note=command.note or "")


def _act_on_money(
    uow: UnitOfWork, merchant: Merchant, case_id: int, command: CaseAction, now: datetime
) -> Case:
    """Void, refund, retry the failed stop-ship step, or convert to a return. A payment may be
    asked on a closed case too (a refund after the return came back). Locks are taken in the
    order the worker takes them: the order, the workflow, then the case."""
    found = uow.cases.get(merchant.id, case_id)
    if found is None:
        raise NotFound(f"no case {case_id}", code="case_not_found")
    uow.orders.lock(merchant.id, [found.order_ref])
    case = uow.cases.lock(merchant.id, case_id) or found
    if command.action in WORKFLOW_ACTIONS:
        act = (
            stopship.retry_step
            if command.action is DeskAction.RETRY_STEP
            else stopship.mark_converted
        )
        act(uow, merchant, case, actor=command.actor, now=now)
        case = uow.cases.lock(merchant.id, case.id or 0) or case  # the workflow wrote to it
    else:
        kind = EntryKind.VOID if command.action is DeskAction.VOID else EntryKind.REFUND
        if kind is EntryKind.REFUND and command.amount is None:
            raise InvalidInput("amount: a refund needs an amount (a decimal string)")
        stopship.pay_by_hand(
            uow,
            merchant,
            case,
            kind=kind,
            amount=command.amount,
            concession=command.concession,
            actor=command.actor,
            now=now,
        )
    if command.note:
        case.record(now, "note", command.actor, {"text": command.note})
    if case.dirty:
        uow.cases.save(merchant.id, [case])
    return case
