"""What people do on a case from the desk: acknowledge, note, assign, wait on someone, resume.

Each action is one unit of work: the case changes, its timeline rows, its clocks (the first
touch stops the first-touch clock; waiting on the customer pauses the SLA clocks, never the
operational one) and the timers for the clocks' next stages are written together.
Payment actions (void, refund) go through the refund ledger (``services.stopship``): checked
under the order's lock, reserved, then sent by the outbox; ``retry_step`` and ``mark_converted``
act on the order's open stop-ship workflow. Each is refused with its own error code when the
ledger or the workflow's state forbids it.
``send_message`` sends the customer a plain message (no choices) from one of the merchant's
templates, rendered as a playbook's ``message`` step renders it (``decisions.compose_message``),
through the outbox: the order's helpdesk ticket, else email (``no_recipient`` when it has
neither); a second click in the same second is the same message.
``close`` closes a case with its outcome and a root cause from the merchant's list (F15, F16): a
resolved case on the outcome the source systems confirmed; an open case only on an outcome no
source system reports (denied, concession), else ``outcome_not_verified``. ``set_root_cause``
corrects a closed case's root cause. A root cause not in the list is ``unknown_root_cause``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from jinja2 import Environment, meta

from recoverydesk.domain.cases import Case, CaseStatus, Outcome
from recoverydesk.domain.errors import InvalidInput, InvalidTransition, NotFound
from recoverydesk.domain.ledger import EntryKind
from recoverydesk.domain.orders import OrderView
from recoverydesk.services import playbooks, stopship
from recoverydesk.services.decisions import (
    NO_DECISION,
    DecisionLinks,
    DecisionOffer,
    compose_message,
    offer_decision,
)
from recoverydesk.services.evidence_pack import TimelineReader
from recoverydesk.services.messages_compose import DEFAULT_TEMPLATES, MessageTemplate
from recoverydesk.services.policy import RootCauseSpec
from recoverydesk.services.ports import JobRequest, Merchant, UnitOfWork
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
    OFFER_DECISION = "offer_decision"  # ask the customer to choose (``services.decisions``)
    SEND_MESSAGE = "send_message"  # a plain message to the customer, with ``template``
    CLOSE = "close"  # with ``outcome`` and ``root_cause``
    SET_ROOT_CAUSE = "set_root_cause"  # of a closed case, with ``root_cause``
    RUN_STEP = "run_step"  # a step of the case's playbook, with ``step`` (``services.playbooks``)


MONEY_ACTIONS = frozenset({DeskAction.VOID, DeskAction.REFUND})
WORKFLOW_ACTIONS = frozenset({DeskAction.RETRY_STEP, DeskAction.MARK_CONVERTED})
CLOSING_ACTIONS = frozenset({DeskAction.CLOSE, DeskAction.SET_ROOT_CAUSE})


@dataclass(frozen=True, slots=True)
class CaseAction:
    action: DeskAction
    actor: str
    note: str | None = None
    owner: str | None = None
    amount: Decimal | None = None
    concession: bool = False
    offer: DecisionOffer | None = None  # for ``offer_decision``
    template: str | None = None  # for ``send_message``
    outcome: Outcome | None = None  # for ``close``
    root_cause: str | None = None  # for ``close`` and ``set_root_cause``
    step: str | None = None  # for ``run_step``
    checked: tuple[str, ...] = ()  # for ``run_step`` of a checklist: the items ticked
    links: DecisionLinks | None = field(default=None, repr=False)  # for ``run_step``


def act_on_case(
    uow: UnitOfWork, *, merchant: Merchant, case_id: int, command: CaseAction, now: datetime
) -> Case:
    if command.action in MONEY_ACTIONS | WORKFLOW_ACTIONS:
        return _act_on_money(uow, merchant, case_id, command, now)
    if command.action in CLOSING_ACTIONS:
        return _close(uow, merchant, case_id, command, now)
    if command.action is DeskAction.RUN_STEP:
        if not command.step:
            raise InvalidInput("step: run_step needs the step's name")
        return playbooks.run_step(
            uow,
            merchant,
            case_id=case_id,
            step=command.step,
            checked=command.checked,
            actor=command.actor,
            now=now,
            links=command.links,
        )
    case = uow.cases.lock(merchant.id, case_id)
    if case is None:
        raise NotFound(f"no case {case_id}", code="case_not_found")
    if not case.is_open:
        raise InvalidTransition(f"case {case_id} is {case.status.value}: reopen it first")
    triage = triage_for(uow, merchant)
    if command.action is DeskAction.OFFER_DECISION:
        offer_decision(
            uow, merchant=merchant, case=case, offer=command.offer, actor=command.actor, now=now
        )
    if command.action is DeskAction.SEND_MESSAGE:
        send_message(uow, merchant, case, template=command.template, actor=command.actor, now=now)
    _apply(case, command, now, set(triage.members()))
    order = uow.orders.get(merchant.id, case.order_ref) or OrderView(ref=case.order_ref)
    triage.keep_clocks(case, order, now)
    uow.cases.save(merchant.id, [case])
    uow.jobs.enqueue(stage_timers(merchant.id, case, triage.calendar), now=now)
    return case


SEND = "outbound.send"  # the outbox's job kind (``services.stopship``)


def send_message(
    uow: UnitOfWork,
    merchant: Merchant,
    case: Case,
    *,
    template: str | None,
    actor: str,
    now: datetime,
) -> str:
    """Send the customer a plain message about a (locked, open) case through the outbox and
    record it on the timeline; the message's idempotency key is returned. The key holds the
    second: the same template twice in one second (a double click) is one message."""
    if not template:
        raise InvalidInput("template: send_message needs a template (e.g. delay_update)")
    policy = triage_for(uow, merchant).policy
    if template not in plain_templates(policy.templates):
        if template in {*policy.templates, *DEFAULT_TEMPLATES}:
            why = f"template: {template!r} asks the customer to choose: use offer_decision"
            raise InvalidInput(why, code="decision_template")
        known = ", ".join(plain_templates(policy.templates))
        why = f"template: no template {template!r} (known: {known})"
        raise InvalidInput(why, code="no_template")
    order = uow.orders.get(merchant.id, case.order_ref) or OrderView(ref=case.order_ref)
    system, params = compose_message(policy, merchant, order, template, dict(NO_DECISION))
    key = f"message:{merchant.name}:{case.id}:{template}:{now.strftime('%Y%m%dT%H%M%SZ')}"
    payload = {
        "cancellation_id": None,
        "order_ref": order.ref,
        "system": system,
        "action": "send_message",
        "key": key,
        "params": params,
    }
    job = JobRequest(merchant.id, kind=SEND, key=f"outbound:{key}", due_at=now, payload=payload)
    uow.jobs.enqueue([job], now=now)
    if not _recorded(uow, merchant, case, key):
        detail = {"template": template, "system": system, "subject": params["subject"]}
        case.record(now, "message_sent", actor, detail | {"idempotency_key": key})
    return key


def _recorded(uow: UnitOfWork, merchant: Merchant, case: Case, key: str) -> bool:
    """Whether the case's stored timeline has this message already (a store that cannot read
    the timeline, a fake, says no)."""
    store = uow.cases
    if case.id is None or not isinstance(store, TimelineReader):
        return False
    rows = store.timeline(merchant.id, case.id)
    return any((row.get("detail") or {}).get("idempotency_key") == key for row in rows)


def plain_templates(own: Mapping[str, MessageTemplate]) -> list[str]:
    """The merchant's own and the desk's default templates that make no decision's offer
    (their text uses no ``decision`` value): what ``send_message`` may send."""
    found = {**DEFAULT_TEMPLATES, **own}
    return sorted(name for name, template in found.items() if not _offers_decision(template))


def _offers_decision(template: MessageTemplate) -> bool:
    used: set[str] = set()
    for text in (template.subject, template.body):
        used |= meta.find_undeclared_variables(_PARSER.parse(text))
    return "decision" in used


_PARSER = Environment(autoescape=True)  # only parses a template: which values it uses


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
        DeskAction.OFFER_DECISION: CaseStatus.WAITING_CUSTOMER,
        DeskAction.WAIT_PARTNER: CaseStatus.WAITING_PARTNER,
        DeskAction.RESUME: CaseStatus.IN_PROGRESS,
    }.get(command.action)
    if target is not None and case.status is not target:
        case.move_to(target, at=now, actor=actor, note=command.note or "")


def _close(
    uow: UnitOfWork, merchant: Merchant, case_id: int, command: CaseAction, now: datetime
) -> Case:
    """Close a case, or correct a closed case's root cause. The order is locked first, as
    intake locks it, since a person's outcome changes what the order's fold sees."""
    found = uow.cases.get(merchant.id, case_id)
    if found is None:
        raise NotFound(f"no case {case_id}", code="case_not_found")
    uow.orders.lock(merchant.id, [found.order_ref])
    case = uow.cases.lock(merchant.id, case_id) or found
    triage = triage_for(uow, merchant)
    root_cause = _listed_root_cause(triage.policy.root_causes, command.root_cause)
    if command.action is DeskAction.SET_ROOT_CAUSE:
        case.set_root_cause(root_cause, at=now, actor=command.actor)
    else:
        outcome = command.outcome or (case.outcome if case.status is CaseStatus.RESOLVED else None)
        if outcome is None:
            raise InvalidInput("outcome: closing an open case needs its outcome")
        case.close(outcome, root_cause=root_cause, at=now, actor=command.actor)
    if command.note:
        case.record(now, "note", command.actor, {"text": command.note})
    order = uow.orders.get(merchant.id, case.order_ref) or OrderView(ref=case.order_ref)
    triage.keep_clocks(case, order, now)
    if case.dirty:
        uow.cases.save(merchant.id, [case])
    return case


def _listed_root_cause(listed: Sequence[RootCauseSpec], code: str | None) -> str:
    codes = [cause.code for cause in listed]
    if code in codes:
        return code
    known = ", ".join(codes) or "none configured"
    what = f"{code!r} is not in the merchant's list" if code else "give one from the list"
    raise InvalidInput(f"root_cause: {what} ({known})", code="unknown_root_cause")


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
