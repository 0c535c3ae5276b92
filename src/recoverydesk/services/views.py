"""JSON shapes of the order 360 and of cases: stored snapshots, API answers and replay output."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from recoverydesk.domain.cases import Case
from recoverydesk.domain.orders import (
    FulfillmentStatus,
    HoldView,
    LineView,
    OrderEvidence,
    OrderView,
    PaymentView,
    RefundSeen,
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
