"""Freshdesk API v2 tickets and conversations to canonical events (source ``helpdesk``).

Accepted: a ticket (``GET /api/v2/tickets/{id}``, bare or as ``{"ticket": …}``), a ticket list,
and a conversation or the conversation list of ``GET /api/v2/tickets/{id}/conversations``.

- A ticket is ``ticket.created`` (``data.ticket_id``), whatever its status (open, resolved …):
  the desk learns that the order has a ticket. Status, priority and the escalation flags
  (``is_escalated``, ``fr_escalated``) travel in ``data``; ``data.escalated`` is true when either
  is. Id ``helpdesk:freshdesk:ticket-<id>``, so every read of the ticket is one fact. A ticket
  marked spam is no order fact.
- A conversation that is ``incoming`` (written by the customer) and not ``private`` is
  ``customer.replied`` (id ``helpdesk:freshdesk:conversation-<id>``); agent replies and private
  notes are no order fact.

Order reference, first present of: a custom field named like ``cf_order…`` (``cf_order_number``,
``cf_order_id``); a tag ``order-1001``; ``order #1001`` in the subject; else the ticket itself as
``freshdesk-ticket-<id>`` (a conversation names only its ticket, so it always uses this). Without
an order field, a ticket's events stand alone until the desk can resolve the ticket to its order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recoverydesk.connectors.normalize._common import (
    Normalized,
    as_map,
    clip,
    event,
    iso,
    need,
    skip,
    text,
)
from recoverydesk.connectors.normalize.zendesk import ticket_order_ref
from recoverydesk.domain.errors import InvalidEvent

SOURCE = "helpdesk"
_STATUS = {2: "open", 3: "pending", 4: "resolved", 5: "closed"}
_PRIORITY = {1: "low", 2: "medium", 3: "high", 4: "urgent"}
_SOURCES = {
    1: "email",
    2: "portal",
    3: "phone",
    7: "chat",
    9: "feedback_widget",
    10: "outbound_email",
}


def normalize(payload: Any, _headers: Mapping[str, str]) -> Normalized:
    if isinstance(payload, list):
        items = [as_map(x, "freshdesk item") for x in payload]
        if not items:
            return skip("the Freshdesk list is empty")
        return _many(items)
    body = as_map(payload, "freshdesk payload")
    if isinstance(body.get("ticket"), Mapping):
        body = body["ticket"]
    if "errors" in body or ("code" in body and "message" in body and "id" not in body):
        raise InvalidEvent(
            f"freshdesk payload: an API error ({text(body.get('description')) or 'error'}), "
            "not a ticket or conversation"
        )
    return _many([body])


def _many(items: list[Mapping[str, Any]]) -> Normalized:
    events: list[dict[str, Any]] = []
    reasons: list[str] = []
    for item in items:
        if "requester_id" in item and "subject" in item:
            outcome = _ticket(item)
        elif "ticket_id" in item and "incoming" in item:
            outcome = _conversation(item)
        else:
            raise InvalidEvent(
                "freshdesk payload: not a Freshdesk ticket or conversation "
                "(no requester_id/subject nor ticket_id/incoming)"
            )
        if isinstance(outcome, str):
            reasons.append(outcome)
        else:
            events.append(outcome)
    return Normalized(events=events) if events else skip("; ".join(reasons))


def _ticket_ref(ticket: Mapping[str, Any], tid: str) -> str:
    fields = ticket.get("custom_fields") if isinstance(ticket.get("custom_fields"), Mapping) else {}
    assert isinstance(fields, Mapping)
    external = next(
        (text(v) for k, v in fields.items() if str(k).startswith("cf_order") and text(v)), None
    )
    tags = ticket.get("tags") if isinstance(ticket.get("tags"), list) else []
    assert isinstance(tags, list)
    return ticket_order_ref(
        "freshdesk", tid, external=external, tags=tags, subject=ticket.get("subject")
    )


def _ticket(ticket: Mapping[str, Any]) -> dict[str, Any] | str:
    tid = need(ticket, "id", "ticket")
    if ticket.get("spam") is True:
        return f"ticket {tid} is marked spam"
    status, priority = ticket.get("status"), ticket.get("priority")
    requester = ticket.get("requester") if isinstance(ticket.get("requester"), Mapping) else {}
    assert isinstance(requester, Mapping)
    escalated = ticket.get("is_escalated") is True or ticket.get("fr_escalated") is True
    customer = {"id": text(ticket.get("requester_id")), "email": text(requester.get("email"))}
    return event(
        id=f"{SOURCE}:freshdesk:ticket-{tid}",
        source=SOURCE,
        type="ticket.created",
        occurred_at=iso(ticket.get("created_at"), "ticket.created_at"),
        order={
            "ref": _ticket_ref(ticket, tid),
            "customer": {k: v for k, v in customer.items() if v},
            "ids": {"freshdesk_ticket": tid},
        },
        data={
            "ticket_id": tid,
            "helpdesk": "freshdesk",
            "subject": clip(text(ticket.get("subject"))),
            "status": _STATUS.get(status, text(status)) if isinstance(status, int) else None,
            "priority": _PRIORITY.get(priority, text(priority))
            if isinstance(priority, int)
            else None,
            "ticket_type": text(ticket.get("type")),
            "channel": _SOURCES.get(ticket["source"])
            if isinstance(ticket.get("source"), int)
            else None,
            "escalated": escalated or None,
            "response_escalated": ticket.get("fr_escalated") is True or None,
            "due_by": iso(ticket["due_by"], "due_by") if ticket.get("due_by") else None,
        },
    )


def _conversation(conv: Mapping[str, Any]) -> dict[str, Any] | str:
    cid = need(conv, "id", "conversation")
    tid = need(conv, "ticket_id", "conversation")
    if conv.get("private") is True:
        return f"conversation {cid} is a private note"
    if conv.get("incoming") is not True:
        return f"conversation {cid} is an agent's reply, not the customer's"
    return event(
        id=f"{SOURCE}:freshdesk:conversation-{cid}",
        source=SOURCE,
        type="customer.replied",
        occurred_at=iso(conv.get("created_at"), "conversation.created_at"),
        order={"ref": f"freshdesk-ticket-{tid}", "ids": {"freshdesk_ticket": tid}},
        data={
            "ticket_id": tid,
            "helpdesk": "freshdesk",
            "conversation_id": cid,
            "message": clip(text(conv.get("body_text")) or text(conv.get("body")), 4000),
            "from": text(conv.get("from_email")),
        },
    )
