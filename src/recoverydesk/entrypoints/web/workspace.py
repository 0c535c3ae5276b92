"""What the case workspace reads: the case, its order 360 across systems, timeline, playbook
plan, stop-ship progress and ledger, and which actions this user may take now (or why not)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import Request

from recoverydesk.bootstrap import Desk
from recoverydesk.domain.cases import Case, Outcome
from recoverydesk.domain.errors import DeskError, InvalidInput
from recoverydesk.domain.orders import OrderView
from recoverydesk.domain.playbooks import RUNNABLE, StepState
from recoverydesk.domain.stopship import TIMESTAMPS, Stage
from recoverydesk.entrypoints.api.decisions import decision_links
from recoverydesk.entrypoints.web.auth import CASE_ROLES, LEAD_ROLES, MONEY_ROLES, WebUser
from recoverydesk.persistence.uow import SqlUnitOfWork
from recoverydesk.services.casework import plain_templates
from recoverydesk.services.decisions import NO_DECISION, compose_message
from recoverydesk.services.messages_compose import CHOICE_LABELS, DEFAULT_TEMPLATES
from recoverydesk.services.playbook_plan import plan_view
from recoverydesk.services.ports import Merchant
from recoverydesk.services.triage import triage_for
from recoverydesk.services.views import (
    cancellation_to_dict,
    case_detail,
    money_view,
    order_to_dict,
)

# The decisions the composer offers: a template, its choices and default (``offer_decision``).
DECISIONS = {
    "stock_decision": (("substitute", "split", "wait", "cancel"), "wait"),
    "address_confirm": (("confirm_address", "correct_address", "cancel"), "confirm_address"),
    "fraud_verification": (("verify_identity", "cancel"), "cancel"),
    "payment_update": (("pay_again", "cancel"), "pay_again"),
}
SYSTEM_NAMES = {
    "shopify": "Storefront (Shopify)",
    "woocommerce": "Storefront (WooCommerce)",
    "magento": "Storefront (Magento)",
    "amazon": "Marketplace (Amazon)",
    "stripe_payment_intent": "Payments (Stripe intent)",
    "stripe_charge": "Payments (Stripe charge)",
    "adyen_psp_reference": "Payments (Adyen)",
    "netsuite": "ERP (NetSuite)",
    "wms": "Warehouse (3PL)",
    "zendesk": "Helpdesk (Zendesk)",
    "tracking_number": "Carrier (tracking)",
}


def find_case(uow: SqlUnitOfWork, user: WebUser, case_id: int) -> tuple[Merchant, Case] | None:
    """The case if it belongs to one of the user's merchants (else None: a 404, whoever owns
    it)."""
    for merchant_id in user.merchants:
        case = uow.cases.get(merchant_id, case_id)
        if case is not None:
            merchant = uow.merchants.by_id(merchant_id)
            return (merchant, case) if merchant is not None else None
    return None


def workspace(
    desk: Desk, request: Request, user: WebUser, merchant: Merchant, case_id: int
) -> dict[str, Any] | None:
    now = desk.clock.now()
    with desk.reader() as uow:
        case = uow.cases.get(merchant.id, case_id)
        if case is None:
            return None
        detail = case_detail(case, uow.cases.timeline(merchant.id, case_id))
        order = uow.orders.get(merchant.id, case.order_ref)
        entries = uow.ledger.for_order(merchant.id, case.order_ref)
        workflows = uow.cancellations.for_order(merchant.id, case.order_ref)
        calls = uow.outbound.for_order(merchant.id, case.order_ref)
        plan = plan_view(uow, merchant, case, now)
        triage = triage_for(uow, merchant)
        members = sorted(triage.members())
        root_causes = [(c.code, c.label) for c in triage.policy.root_causes]
        messages = plain_templates(triage.policy.templates)
    order_body = order_to_dict(order) if order is not None else None
    money = money_view(order, entries) if order is not None else None
    cancellation = cancellation_to_dict(workflows[-1]) if workflows else None
    return {
        "merchant": merchant,
        "case": detail,
        "is_open": case.is_open,
        "order": order_body,
        "systems": _systems(order_body),
        "money": money,
        "calls": calls[-20:],
        "plan": _steps(plan, user, case.is_open),
        "cancellation": cancellation,
        "stopship_steps": _stopship_steps(cancellation),
        "members": members,
        "root_causes": root_causes,
        "outcomes": [o.value for o in Outcome],
        "templates": sorted(DEFAULT_TEMPLATES),
        "messages": messages,
        "decisions": {k: (v[0], v[1]) for k, v in DECISIONS.items()},
        "choice_labels": CHOICE_LABELS,
        "can": _allowed(request, user, case, money=money, cancellation=cancellation)
        | {"message": _message_reason(user, case, order)},
    }


def message_preview(
    desk: Desk, merchant: Merchant, case_id: int, template: str
) -> dict[str, str] | None:
    """The plain message ``template`` makes for this case's customer, as ``send_message`` would
    send it (subject, body, the system and the recipient), or the reason it cannot be sent;
    None when there is no such case."""
    with desk.reader() as uow:
        case = uow.cases.get(merchant.id, case_id)
        if case is None:
            return None
        policy = triage_for(uow, merchant).policy
        order = uow.orders.get(merchant.id, case.order_ref) or OrderView(ref=case.order_ref)
    try:
        if template not in plain_templates(policy.templates):
            raise InvalidInput(f"no plain message template {template!r}")
        system, params = compose_message(policy, merchant, order, template, dict(NO_DECISION))
    except DeskError as error:
        return {"template": template, "error": error.message}
    recipient = f"ticket {params['ticket']}" if "ticket" in params else str(params.get("to"))
    return {
        "template": template,
        "subject": str(params["subject"]),
        "body": str(params["body"]),
        "system": system,
        "recipient": recipient,
    }


def _message_reason(user: WebUser, case: Case, order: OrderView | None) -> str | None:
    if not case.is_open:
        return "the case is closed"
    if not user.may(CASE_ROLES):
        return "for agents, leads, risk or admins"
    if order is None or not (order.tickets or order.customer_email):
        return "the order has no customer email and no helpdesk ticket"
    return None


def _systems(order: dict[str, Any] | None) -> list[tuple[str, str]]:
    if order is None:
        return []
    found = [(SYSTEM_NAMES.get(kind, kind), key) for kind, key in order["system_ids"].items()]
    found += [("Carrier (tracking)", code) for code in order["fulfillment"]["tracking"]]
    found += [("Helpdesk ticket", str(ticket)) for ticket in order["tickets"]]
    return found


def _steps(plan: dict[str, Any] | None, user: WebUser, is_open: bool) -> dict[str, Any] | None:
    if plan is None:
        return None
    runnable = {state.value for state in RUNNABLE}
    for step in plan["steps"]:
        why = None
        if not is_open:
            why = "the case is closed"
        elif not user.may(CASE_ROLES):
            why = f"for agents, leads, risk or admins, not {user.role.value}"
        elif step["state"] not in runnable:
            why = step["reason"] or _STATE_REASONS.get(step["state"], step["state"])
        step["why_not"] = why
    return plan


_STATE_REASONS = {
    StepState.DONE.value: "done already",
    StepState.NOT_APPLICABLE.value: "does not apply to this case",
    StepState.BLOCKED.value: "blocked",
}


def _stopship_steps(cancellation: dict[str, Any] | None) -> list[tuple[str, str | None]]:
    if cancellation is None:
        return []
    times = cancellation["timestamps"]
    return [(name.removesuffix("_at").replace("_", " "), times.get(name)) for name in TIMESTAMPS]


def _allowed(
    request: Request,
    user: WebUser,
    case: Case,
    *,
    money: dict[str, Any] | None,
    cancellation: dict[str, Any] | None,
) -> dict[str, str | None]:
    """Each action: None when this user may take it now, else the reason it is disabled."""
    closed = None if case.is_open else "the case is closed"
    work = None if user.may(CASE_ROLES) else "for agents, leads, risk or admins"
    can: dict[str, str | None] = {
        "work": closed or work,
        "close": closed or work,
        "reassign": closed or (None if user.may(LEAD_ROLES) else "leads and admins only"),
        "decision": closed or work or _no_links(request),
        "cancel": work or _cancel_reason(cancellation),
    }
    finance = None if user.may(MONEY_ROLES) else "finance only (finance, lead or admin)"
    balance = (money or {}).get("balance") or {}
    refundable = balance.get("refundable") or "0"
    can["refund"] = finance or (None if Decimal(refundable) > 0 else "nothing left to refund")
    can["void"] = finance or _void_reason(balance)
    return can


def _no_links(request: Request) -> str | None:
    try:
        decision_links(request)
    except DeskError as error:
        return error.message
    return None


def _cancel_reason(cancellation: dict[str, Any] | None) -> str | None:
    if cancellation is not None and cancellation["stage"] != Stage.DONE.value:
        return f"a cancellation is running ({cancellation['stage'].replace('_', ' ')})"
    return None


def _void_reason(balance: dict[str, Any]) -> str | None:
    if not balance:
        return "no payment on this order"
    if balance.get("voided"):
        return "voided already"
    if Decimal(balance.get("captured") or 0) > 0:
        return "the payment is captured: refund instead"
    if Decimal(balance.get("authorized") or 0) <= 0:
        return "nothing authorized to void"
    return None
