"""JSON shapes of the order 360 and of cases: stored snapshots, API answers and replay output."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from recoverydesk.domain.cases import Case
from recoverydesk.domain.ledger import Balance, LedgerEntry, reconcile
from recoverydesk.domain.orders import (
    FulfillmentStatus,
    HoldView,
    LineView,
    OrderEvidence,
    OrderView,
    PaymentView,
    RefundSeen,
)
from recoverydesk.domain.stopship import (
    TIMESTAMPS,
    Branch,
    Cancellation,
    Command,
    CommandStatus,
    FinalOutcome,
    Requester,
    Sent,
    Stage,
)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _money(amount: Decimal | None) -> str | None:
    return str(amount) if amount is not None else None


def _dec(text: str | None) -> Decimal | None:
    return Decimal(text) if text is not None else None


def order_to_dict(order: OrderView) -> dict[str, Any]:
    pay = order.payment
    return {
        "ref": order.ref,
        "channel": order.channel,
        "fulfillment_type": order.fulfillment_type,
        "value": _money(order.value),
        "currency": order.currency,
        "placed_at": _iso(order.placed_at),
        "ship_by": _iso(order.ship_by),
        "promised_by": _iso(order.promised_by),
        "customer": {
            "id": order.customer_id,
            "email": order.customer_email,
            "tier": order.customer_tier,
        },
        "shipping_address": order.shipping_address,
        "address_status": order.address_status,
        "lines": [
            {
                "sku": ln.sku,
                "qty": ln.qty,
                "price": _money(ln.price),
                "fulfillment": ln.fulfillment.value,
                "cancelled": ln.cancelled,
                "ordered": ln.ordered,
            }
            for ln in order.lines.values()
        ],
        "fulfillment": {
            "status": order.fulfillment.value,
            "times": {k: _iso(v) for k, v in order.fulfillment_times.items()},
            "tracking": list(order.tracking),
        },
        "payment": {
            "status": pay.status.value,
            "authorized": _money(pay.authorized),
            "captured": _money(pay.captured),
            "refunded": _money(pay.refunded),
            "voided": pay.voided,
            "failures": pay.failures,
            "last_failure": pay.last_failure,
            "refunds": {k: _money(v) for k, v in pay.refunds.items()},
            "captures": {k: _money(v) for k, v in pay.captures.items()},
        },
        "holds": [
            {
                "hold_type": h.hold_type,
                "active": h.active,
                "placed_at": _iso(h.placed_at),
                "released_at": _iso(h.released_at),
                "reason": h.reason,
            }
            for h in order.holds.values()
        ],
        "cancel_requested_at": _iso(order.cancel_requested_at),
        "fully_cancelled": order.fully_cancelled,
        "cancelled_at": _iso(order.cancelled_at),
        "cancel_reason": order.cancel_reason,
        "cancelled": order.cancelled,
        "partially_cancelled": order.partially_cancelled,
        "system_ids": dict(order.system_ids),
        "tickets": list(order.tickets),
        "erp_status": order.erp_status,
        "carrier": order.carrier,
        "event_count": order.event_count,
        "evidence": _evidence_to_dict(order.evidence),
        "last_event": (
            {"at": _iso(order.last_key[0]), "id": order.last_key[1]} if order.last_key else None
        ),
    }


_EVIDENCE_IDS = (
    "cancelled_by",
    "shipped_by",
    "returned_by",
    "return_in_flight_by",
    "captured_by",
    "cancel_requested_by",
    "stopship_answered_by",
    "stopship_answer",
)


def _evidence_to_dict(seen: OrderEvidence) -> dict[str, Any]:
    """Which event first showed each fact the drift rules compare (kept so that an order read
    back from storage can take the fast path without losing drift evidence)."""
    body: dict[str, Any] = {name: getattr(seen, name) for name in _EVIDENCE_IDS}
    body["folded"] = seen.folded
    body["last_captured_at"] = _iso(seen.last_captured_at)
    body["refunds"] = {k: [r.event_id, r.intent] for k, r in seen.refunds.items()}
    body["holds_placed_by"] = dict(seen.holds_placed_by)
    return body


def _evidence_from_dict(body: dict[str, Any] | None) -> OrderEvidence:
    if not body:  # a snapshot from before drift evidence was kept: refold when it matters
        return OrderEvidence()
    seen = OrderEvidence(folded=int(body["folded"]))
    for name in _EVIDENCE_IDS:
        setattr(seen, name, body.get(name))
    seen.last_captured_at = _when(body.get("last_captured_at"))
    seen.refunds = {k: RefundSeen(v[0], v[1]) for k, v in body.get("refunds", {}).items()}
    seen.holds_placed_by = dict(body.get("holds_placed_by", {}))
    return seen


def order_from_dict(doc: dict[str, Any]) -> OrderView:
    pay, ful, cust = doc["payment"], doc["fulfillment"], doc["customer"]
    last = doc.get("last_event")
    return OrderView(
        ref=doc["ref"],
        channel=doc["channel"],
        fulfillment_type=doc["fulfillment_type"],
        value=_dec(doc["value"]),
        currency=doc["currency"],
        placed_at=_when(doc["placed_at"]),
        ship_by=_when(doc["ship_by"]),
        promised_by=_when(doc["promised_by"]),
        customer_id=cust["id"],
        customer_email=cust["email"],
        customer_tier=cust["tier"],
        shipping_address=doc["shipping_address"],
        address_status=doc["address_status"],
        lines={
            ln["sku"]: LineView(
                ln["sku"],
                ln["qty"],
                _dec(ln["price"]),
                FulfillmentStatus(ln["fulfillment"]),
                ln["cancelled"],
                ln.get("ordered", False),
            )
            for ln in doc["lines"]
        },
        fulfillment=FulfillmentStatus(ful["status"]),
        fulfillment_times={k: datetime.fromisoformat(v) for k, v in ful["times"].items()},
        tracking=list(ful["tracking"]),
        payment=PaymentView(
            authorized=Decimal(pay["authorized"]),
            captured=Decimal(pay["captured"]),
            refunded=Decimal(pay["refunded"]),
            voided=pay["voided"],
            failures=pay["failures"],
            last_failure=pay["last_failure"],
            refunds={k: Decimal(v) for k, v in pay["refunds"].items()},
            captures={k: Decimal(v) for k, v in pay.get("captures", {}).items()},
        ),
        holds={
            h["hold_type"]: HoldView(
                h["hold_type"],
                h["active"],
                datetime.fromisoformat(h["placed_at"]),
                _when(h["released_at"]),
                h["reason"],
            )
            for h in doc["holds"]
        },
        cancel_requested_at=_when(doc["cancel_requested_at"]),
        fully_cancelled=doc.get("fully_cancelled", False),
        cancelled_at=_when(doc["cancelled_at"]),
        cancel_reason=doc["cancel_reason"],
        system_ids=dict(doc["system_ids"]),
        tickets=list(doc["tickets"]),
        erp_status=doc.get("erp_status"),
        carrier=doc.get("carrier"),
        event_count=doc["event_count"],
        last_key=(datetime.fromisoformat(last["at"]), last["id"]) if last else None,
        evidence=_evidence_from_dict(doc.get("evidence")),
    )


def case_detail(case: Case, timeline: list[dict[str, Any]]) -> dict[str, Any]:
    """A case with its SLA clocks, escalations and timeline."""
    body = case_to_dict(case)
    body["timeline"] = [
        {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
        for row in timeline
    ]
    return body


def case_to_dict(case: Case) -> dict[str, Any]:
    """The case fields of the contract (without timeline, SLA and escalations)."""
    return {
        "id": case.id,
        "order_ref": case.order_ref,
        "category": str(case.category),
        "classification": case.classification,
        "priority": case.priority,
        "queue": case.queue,
        "status": case.status.value,
        "hold_type": case.hold_type,
        "outcome": case.outcome.value if case.outcome else None,
        "reason_code": case.reason_code.value if case.reason_code else None,
        "root_cause": case.root_cause,
        "opened_at": _iso(case.opened_at),
        "closed_at": _iso(case.closed_at),
        "opened_by": case.opened_by,
        "event_ids": list(case.event_ids),
        "rule": case.rule or None,
        "data": dict(case.data),
        "owner": case.owner,
        "config_version": case.config_version,
        "deadline": _iso(case.deadline),
        "revenue_at_risk": _money(case.revenue_at_risk),
        "first_touched_at": _iso(case.first_touched_at),
        "sla": sla_to_dict(case),
        "escalations": list(case.escalations),
    }


def sla_to_dict(case: Case) -> dict[str, Any]:
    """Each clock's due time, pauses and breach, and whether any clock breached."""
    clocks = {name: clock.to_dict() for name, clock in case.clocks.items()}
    return {
        "clocks": clocks,
        "breached": any(clock.breached for clock in case.clocks.values()),
        "paused": any(clock.paused for clock in case.clocks.values()),
    }


def cancellation_to_dict(c: Cancellation) -> dict[str, Any]:
    """A stop-ship workflow as stored and as the API and replay output show it."""
    return {
        "id": c.id,
        "order_ref": c.order_ref,
        "case_id": c.case_id,
        "merchant_id": c.merchant_id,
        "requested_by": c.requested_by.value,
        "classification": c.requested_by.value,
        "reason": c.reason,
        "reason_code": c.reason_code.value,
        "source": c.source,
        "request_event": c.request_event,
        "requests": list(c.requests),
        "lines": dict(c.lines) if c.lines is not None else None,
        "fraud": c.fraud,
        "stage": c.stage.value,
        "branch": c.branch.value if c.branch else None,
        "state_used": c.state_used,
        "state_from": c.state_from,
        "hold_first": c.hold_first,
        "attempt": c.attempt,
        "ack_due_at": _iso(c.ack_due_at),
        "acknowledged_at": _iso(c.acknowledged_at),
        "acknowledged_by": c.acknowledged_by,
        "rejected_at": _iso(c.rejected_at),
        "rejected_by": c.rejected_by,
        "replans": c.replans,
        "rejection": c.rejection,
        "exception_reason": c.exception_reason,
        "outcome": c.outcome.value if c.outcome else None,
        "timestamps": {name: _iso(c.times.get(name)) for name in TIMESTAMPS},
        "commands": [
            {
                "name": name,
                "system": s.command.system,
                "action": s.command.action,
                "idempotency_key": s.command.key,
                "params": s.command.params,
                "status": s.status.value,
                "planned_at": _iso(s.planned_at),
                "answered_at": _iso(s.answered_at),
                "answer": s.answer,
            }
            for name, s in c.commands.items()
        ],
        "version": c.version,
    }


def cancellation_from_dict(doc: dict[str, Any]) -> Cancellation:
    c = Cancellation(
        order_ref=doc["order_ref"],
        requested_at=datetime.fromisoformat(doc["timestamps"]["requested_at"]),
        requested_by=Requester(doc["requested_by"]),
        reason=doc["reason"],
        source=doc["source"],
        request_event=doc["request_event"],
        id=doc["id"],
        case_id=doc["case_id"],
        merchant_id=doc["merchant_id"],
        lines=dict(doc["lines"]) if doc["lines"] is not None else None,
        fraud=doc["fraud"],
        stage=Stage(doc["stage"]),
        branch=Branch(doc["branch"]) if doc["branch"] else None,
        state_used=doc["state_used"],
        state_from=doc["state_from"],
        hold_first=doc.get("hold_first", False),
        attempt=doc["attempt"],
        ack_due_at=_when(doc["ack_due_at"]),
        acknowledged_at=_when(doc["acknowledged_at"]),
        acknowledged_by=doc["acknowledged_by"],
        rejected_at=_when(doc["rejected_at"]),
        rejected_by=doc.get("rejected_by"),
        replans=doc.get("replans", 0),
        rejection=doc["rejection"],
        exception_reason=doc["exception_reason"],
        outcome=FinalOutcome(doc["outcome"]) if doc["outcome"] else None,
        times={k: datetime.fromisoformat(v) for k, v in doc["timestamps"].items() if v},
        requests=list(doc["requests"]),
        version=doc["version"],
    )
    for row in doc["commands"]:
        command = Command(
            row["name"], row["system"], row["action"], row["idempotency_key"], row["params"]
        )
        c.commands[row["name"]] = Sent(
            command,
            datetime.fromisoformat(row["planned_at"]),
            CommandStatus(row["status"]),
            _when(row["answered_at"]),
            dict(row["answer"]),
        )
    return c


def ledger_entry_to_dict(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "order_ref": entry.order_ref,
        "kind": entry.kind.value,
        "idempotency_key": entry.key,
        "amount": _money(entry.amount),
        "currency": entry.currency,
        "status": entry.status.value,
        "actor": entry.actor,
        "case_id": entry.case_id,
        "cancellation_id": entry.cancellation_id,
        "reference": entry.reference,
        "confirmed_by": entry.confirmed_by,
        "detail": dict(entry.detail),
        "created_at": _iso(entry.created_at),
    }


def balance_to_dict(money: Balance) -> dict[str, Any]:
    return {
        "authorized": _money(money.authorized),
        "captured": _money(money.captured),
        "voided": money.voided,
        "refunded": _money(money.refunded),
        "refunded_elsewhere": _money(money.refunded_elsewhere),
        "refunds_elsewhere": [
            {"refund_id": r.refund_id, "amount": _money(r.amount)} for r in money.elsewhere
        ],
        "pending": _money(money.pending),
        "refundable": _money(money.refundable),
    }


def money_view(order: OrderView, entries: list[LedgerEntry]) -> dict[str, Any]:
    """The order's ledger: the balance after reconciling reported refunds, and every entry."""
    balance, _ = reconcile(order, entries)
    return {
        "balance": balance_to_dict(balance),
        "entries": [ledger_entry_to_dict(entry) for entry in entries],
    }
