"""The desk's own kinds of playbook step (``do:`` in a playbook), each a ``StepKind``.

- ``command``: one call to a merchant's system (``params.system``, ``params.action`` and the
  call's own ``params.params``), sent by the outbox. What the action needs from the case comes
  with it (``command_params``): the short sku of an ``inventory_lookup``, the substitute of a
  ``line_swap`` (the step's ``params.substitutions`` map, sku -> substitute, else the case's
  ``substitute``), the lines still to ship of a ``split_shipment``, the order's shipping address
  of an ``address_update``, the tracking number of a carrier ``claim`` or ``trace``, the amount
  of a ``retry_payment``, the reason of a ``wms_hold`` or ``label_reprint``, the refund intent
  of a ``refund_lookup``; the step's own ``params.params`` win. A call missing what it needs is
  blocked (``line_swap needs substitute: ...``) and left to a person.
- ``message``: a customer message from a template (``params.template``), through the order's
  helpdesk ticket, else by email; rendered as a decision's message is, without choices.
- ``decision``: ask the customer to choose (``services.decisions.offer_decision``);
  ``params``: ``template``, ``choices``, ``default``, ``window``. The case waits on the customer.
- ``stopship``: cancel the order through the stop-ship workflow (``params.reason``).
- ``escalate``: the case goes to an owner of the merchant's escalation path (``params.role``:
  an ``escalation.owners`` name, or ``ops_lead``), notified by email and chat.
- ``check``: a checklist a person works through; the facts say which items they ticked.
"""

from __future__ import annotations

from typing import Any

from recoverydesk.domain.cases import CaseStatus
from recoverydesk.domain.errors import DeskError
from recoverydesk.domain.ledger import EntryKind
from recoverydesk.services import stopship
from recoverydesk.services.decisions import NO_DECISION, compose_message, make_offer, offer_decision
from recoverydesk.services.escalation import NOTIFY_CHAT, NOTIFY_EMAIL
from recoverydesk.services.playbook_config import window_of
from recoverydesk.services.playbook_kinds import OutsideCall, StepContext, StepOutcome
from recoverydesk.services.policy import Contact
from recoverydesk.services.ports import JobRequest


def command_step(ctx: StepContext) -> StepOutcome:
    action = str(ctx.params["action"])
    params = {**command_params(ctx, action), **(ctx.params.get("params") or {})}
    missing = next((need for need in _NEEDS.get(action, ()) if not params.get(need[0])), None)
    if missing is not None:
        return StepOutcome(blocked=f"{action} needs {missing[0]}: {missing[1]}")
    call = OutsideCall(str(ctx.params["system"]), action, params)
    return StepOutcome(calls=(call,))


# What an action cannot go without, and why it may be missing.
_NEEDS: dict[str, tuple[tuple[str, str], ...]] = {
    "inventory_lookup": (("sku", "the case names no sku"),),
    "line_swap": (
        ("sku", "the case names no sku"),
        ("substitute", "no substitute is known (the step's params.substitutions)"),
    ),
    "split_shipment": (("lines", "no line of the order is left to ship now"),),
    "address_update": (("address", "the order has no shipping address"),),
    "claim": (("tracking", "the order has no tracking number yet"),),
    "trace": (("tracking", "the order has no tracking number yet"),),
}


def command_params(ctx: StepContext, action: str) -> dict[str, Any]:
    """What the case and its order tell the action (None where they do not know)."""
    case, order = ctx.case, ctx.order
    sku = case.data.get("sku")
    line = order.lines.get(str(sku)) if sku else None
    if action == "inventory_lookup":
        return {"sku": sku, "qty": line.qty if line and line.qty else 1}
    if action == "line_swap":
        substitutes = ctx.params.get("substitutions") or {}
        substitute = substitutes.get(sku) or case.data.get("substitute")
        return {"sku": sku, "substitute": substitute, "qty": line.qty if line and line.qty else 1}
    if action == "split_shipment":
        ready = [
            {"sku": code, "qty": item.qty or 1}
            for code, item in sorted(order.lines.items())
            if code != sku and not item.cancelled
        ]
        return {"lines": ready, "held_back": [sku] if sku else []}
    if action == "address_update":
        return {"address": dict(order.shipping_address or {})}
    if action in {"claim", "trace"}:
        tracking = order.tracking[-1] if order.tracking else None
        found = {"tracking": tracking, "carrier": order.carrier, "kind": case.data.get("kind")}
        if action == "claim" and order.value is not None:  # what the claim asks back
            found |= {"amount": str(order.value), "currency": order.currency}
        return found
    return _reason_params(ctx, action)


def _reason_params(ctx: StepContext, action: str) -> dict[str, Any]:
    case, order = ctx.case, ctx.order
    if action == "retry_payment" and order.value is not None:
        return {"amount": str(order.value), "currency": order.currency}
    if action == "wms_hold":
        return {"reason": str(case.category)}
    if action == "release_hold" and case.hold_type:
        return {"hold_type": case.hold_type}
    if action == "label_reprint" and case.data.get("reason"):
        return {"reason": case.data["reason"]}
    if action == "refund_lookup":
        entries = ctx.uow.ledger.for_order(ctx.merchant.id, order.ref)
        refunds = [e for e in entries if e.kind is EntryKind.REFUND]
        return {"intent": refunds[-1].key} if refunds else {}
    return {}


def message_step(ctx: StepContext) -> StepOutcome:
    template = str(ctx.params["template"])
    try:
        system, params = compose_message(
            ctx.policy, ctx.merchant, ctx.order, template, dict(NO_DECISION)
        )
    except DeskError as problem:
        return StepOutcome(blocked=problem.message)
    call = OutsideCall(system, "send_message", params, key_suffix=":message")
    return StepOutcome(calls=(call,), facts={"template": template, "system": system})


def decision_step(ctx: StepContext) -> StepOutcome:
    if ctx.links is None:
        return StepOutcome(blocked="decision links are not configured here")
    try:
        offer = make_offer(
            template=str(ctx.params["template"]),
            choices=[str(c) for c in ctx.params.get("choices") or []],
            default=str(ctx.params.get("default")),
            window=window_of(ctx.params),
            links=ctx.links,
            decision_id=f"{ctx.step}-{ctx.key.rsplit(':', 1)[-1]}",
        )
        decision = offer_decision(
            ctx.uow, merchant=ctx.merchant, case=ctx.case, offer=offer, actor=ctx.actor, now=ctx.now
        )
    except DeskError as problem:
        return StepOutcome(blocked=problem.message)
    if ctx.case.status is not CaseStatus.WAITING_CUSTOMER:
        ctx.case.touch(at=ctx.now, actor=ctx.actor)
        ctx.case.move_to(CaseStatus.WAITING_CUSTOMER, at=ctx.now, actor=ctx.actor)
    facts = {"decision": decision.id, "expires_at": decision.expires_at.isoformat()}
    return StepOutcome(facts=facts)


def stopship_step(ctx: StepContext) -> StepOutcome:
    order = ctx.order
    if order.cancelled:
        return StepOutcome(blocked=f"order {order.ref} is already cancelled")
    if order.shipped:
        return StepOutcome(blocked=f"order {order.ref} has shipped: a return, not a stop-ship")
    person = not ctx.actor.startswith("playbook:")
    request = stopship.CancelRequest(
        requested_by="ops" if person else "auto",
        reason=str(ctx.params.get("reason") or "") or None,
        request_id=ctx.key,
    )
    try:
        workflow, _ = stopship.request_cancellation(
            ctx.uow, ctx.merchant, order.ref, request, actor=ctx.actor, now=ctx.now
        )
    except DeskError as problem:
        return StepOutcome(blocked=problem.message)
    return StepOutcome(facts={"cancellation": workflow.id})


def escalate_step(ctx: StepContext) -> StepOutcome:
    role = str(ctx.params.get("role") or "ops_lead")
    escalation = ctx.policy.escalation
    contact = escalation.ops_lead if role == "ops_lead" else escalation.owners.get(role)
    if contact is None:
        return StepOutcome(blocked=f"no escalation owner {role!r}")
    case = ctx.case
    record = {
        "key": ctx.key,
        "clock": "playbook",
        "stage": "escalation",
        "step": ctx.step,
        "fired_at": ctx.now.isoformat(),
        "to": contact.name,
    }
    case.escalations.append(record)
    case.record(ctx.now, "escalated", ctx.actor, record)
    ctx.uow.jobs.enqueue(_notifications(ctx, contact, record), now=ctx.now)
    return StepOutcome(facts={"to": contact.name, "role": role})


def _notifications(ctx: StepContext, contact: Contact, record: dict[str, str]) -> list[JobRequest]:
    case = ctx.case
    subject = f"[{ctx.merchant.name}] case {case.id} escalated by its playbook"
    body = (
        f"Case {case.id} ({case.category!s}, {case.priority}, queue {case.queue}) on order "
        f"{case.order_ref}: the playbook step {ctx.step} escalates it to {contact.name}. "
        f"Owner: {case.owner or 'nobody'}."
    )
    facts = {**record, "case_id": case.id, "order_ref": case.order_ref}
    note: dict[str, Any] = {"key": ctx.key, "subject": subject, "body": body, "facts": facts}
    jobs = []
    if contact.email:
        payload = {**note, "recipients": [contact.email]}
        jobs.append(_job(ctx, NOTIFY_EMAIL, f"notify:email:{ctx.key}", payload))
    urls = {u for u in (ctx.policy.escalation.chat_webhook, contact.chat_webhook) if u}
    for url in sorted(urls):
        jobs.append(_job(ctx, NOTIFY_CHAT, f"notify:chat:{url}:{ctx.key}", {**note, "url": url}))
    return jobs


def _job(ctx: StepContext, kind: str, key: str, payload: dict[str, Any]) -> JobRequest:
    return JobRequest(ctx.merchant.id, kind, key, ctx.now, payload)


def check_step(ctx: StepContext) -> StepOutcome:
    listed = [str(item) for item in ctx.params.get("checklist") or []]
    unknown = [item for item in ctx.checked if item not in listed]
    if unknown:
        return StepOutcome(blocked=f"not on the checklist: {unknown[0]!r}")
    return StepOutcome(facts={"checked": list(ctx.checked), "checklist": listed})
