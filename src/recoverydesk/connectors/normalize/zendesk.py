"""Zendesk Support API tickets and ticket audits to canonical events (source ``helpdesk``).

Accepted: a ticket (``{"ticket": …}`` as ``GET/PUT /api/v2/tickets/{id}`` answer, with the
``audit`` of an update when present), a ticket list (``{"tickets": […]}``) and the audit list
``{"audits": […]}`` of ``GET /api/v2/tickets/{id}/audits`` (with its ``users`` side-load,
``?include=users``, when present).

- A ticket is ``ticket.created`` (``data.ticket_id``), whatever its status: the desk learns that
  the order has a ticket. Its type, priority and status travel in ``data`` (an ``incident`` or an
  ``urgent``/``high`` ticket is marked ``data.escalated``). Id ``helpdesk:zendesk:ticket-<id>``,
  so the ticket, its update answer and its creation audit are one fact.
- In audits, the audit holding the ``Create`` events is ``ticket.created`` (same id). Its comment
  is the ticket's description, never a reply, whether or not the ticket comes with it.
- A *public* comment of a later audit is ``customer.replied`` (id
  ``helpdesk:zendesk:comment-<id>``) when its author (the comment's ``author_id``, else the
  audit's) is the customer:

  1. when the ticket's requester is known (from the ticket, or from a ``requester_id``
     ``Create``/``Change`` in the audits): the author is the requester and not also the
     assignee (an agent's own sample ticket);
  2. else, when the ``users`` side-load gives the author's ``role``: the role is ``end-user``;
  3. else: the author is not known as an agent (no assignee the audits name, no author of a
     private note: only agents write those) and the audit did not come through the API or a
     business rule (``via.channel`` ``api`` / ``rule``: the desk's own messages, integrations,
     triggers). Such a reply is kept rather than lost when a webhook sends only the update's
     audits.

  Private notes, agent comments and field changes (tags, priority, status) are no order fact.

Order reference, first present of: ``external_id``; a tag ``order-1001`` / ``order_1001`` /
``order:1001``; ``order #1001`` / ``order 1001`` in the subject; else the ticket itself as
``zendesk-ticket-<id>`` (the desk cannot yet resolve a ticket to its order without one of the
above, so such events stand alone until it can). ``order.ids.zendesk_ticket`` keeps the id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from recoverydesk.connectors.normalize._common import (
    Normalized,
    as_list,
    as_map,
    clip,
    event,
    iso,
    need,
    skip,
    text,
)
from recoverydesk.domain.errors import InvalidEvent

SOURCE = "helpdesk"
_TAG_REF = re.compile(r"order[-_:]#?([A-Za-z0-9][A-Za-z0-9._-]{0,63})", re.IGNORECASE)
_SUBJECT_REF = re.compile(
    r"\border\s*(?:no\.?|number|num\.?|id)?\s*[:#]?\s*#?([A-Za-z0-9-]*\d[A-Za-z0-9-]*)",
    re.IGNORECASE,
)
_ESCALATED_PRIORITIES = frozenset({"urgent", "high"})
# Channels of updates no customer writes: the API (the desk's own messages, integrations) and
# business rules (triggers, automations).
_AGENT_CHANNELS = frozenset({"api", "rule"})


def ticket_order_ref(
    vendor: str, ticket_id: str, *, external: str | None, tags: Iterable[object], subject: object
) -> str:
    """The order a helpdesk ticket is about (shared by the helpdesk vendors)."""
    if external:
        return external[:200]
    for tag in tags:
        match = _TAG_REF.fullmatch(text(tag) or "")
        if match:
            return match.group(1)
    match = _SUBJECT_REF.search(text(subject) or "")
    if match and len(match.group(1)) >= 3:  # "order 2 shirts" names no order
        return match.group(1)[:200]
    return f"{vendor}-ticket-{ticket_id}"


def normalize(payload: Any, _headers: Mapping[str, str]) -> Normalized:
    body = as_map(payload, "zendesk payload")
    if isinstance(body.get("ticket"), Mapping):
        ticket = body["ticket"]
        events = [_ticket(ticket)]
        if isinstance(body.get("audit"), Mapping):
            events.extend(_audits([body["audit"]], ticket))
        return Normalized(events=events)
    if "tickets" in body:
        tickets = [as_map(t, "tickets[]") for t in as_list(body["tickets"], "tickets")]
        events = [_ticket(t) for t in tickets]
        return Normalized(events=events) if events else skip("the ticket list is empty")
    if "audits" in body:
        audits = as_list(body["audits"], "audits")
        events = _audits(audits, None, _roles(body.get("users")))
        if events:
            return Normalized(events=events)
        return skip(
            "the audits hold no ticket creation and no public comment by the customer "
            "(private notes, agent comments and field changes are no order fact)"
        )
    if "error" in body or "errors" in body:
        raise InvalidEvent(
            f"zendesk payload: an API error ({text(body.get('error')) or 'error'}), not a ticket"
        )
    raise InvalidEvent("zendesk payload: not a Zendesk ticket or audit list (no ticket/audits)")


def _order(
    ticket_id: str, external: str | None, tags: Iterable[object], subject: object
) -> dict[str, Any]:
    ref = ticket_order_ref("zendesk", ticket_id, external=external, tags=tags, subject=subject)
    return {"ref": ref, "ids": {"zendesk_ticket": ticket_id}}


def _ticket(ticket: Mapping[str, Any]) -> dict[str, Any]:
    tid = need(ticket, "id", "ticket")
    kind = text(ticket.get("type"))
    priority = text(ticket.get("priority"))
    via = ticket.get("via") if isinstance(ticket.get("via"), Mapping) else {}
    assert isinstance(via, Mapping)
    tags = ticket.get("tags") if isinstance(ticket.get("tags"), list) else []
    assert isinstance(tags, list)
    return event(
        id=f"{SOURCE}:zendesk:ticket-{tid}",
        source=SOURCE,
        type="ticket.created",
        occurred_at=iso(ticket.get("created_at"), "ticket.created_at"),
        order=_order(tid, text(ticket.get("external_id")), tags, ticket.get("subject")),
        data={
            "ticket_id": tid,
            "helpdesk": "zendesk",
            "subject": clip(text(ticket.get("subject"))),
            "status": text(ticket.get("status")),
            "priority": priority,
            "ticket_type": kind,
            "channel": text(via.get("channel")),
            "requester_id": text(ticket.get("requester_id")),
            "escalated": True if kind == "incident" or priority in _ESCALATED_PRIORITIES else None,
        },
    )


def _roles(users: object) -> dict[str, str]:
    """The ``users`` side-load of an audit list: user id -> role (``end-user``, ``agent``,
    ``admin``)."""
    if not isinstance(users, list):
        return {}
    roles: dict[str, str] = {}
    for user in users:
        if isinstance(user, Mapping) and text(user.get("id")) and text(user.get("role")):
            roles[str(text(user.get("id")))] = str(text(user.get("role")))
    return roles


def _agents(audits: list[Mapping[str, Any]], roles: Mapping[str, str]) -> set[str]:
    """The users the audits show to be agents: assignees, authors of private notes, and the
    users the side-load calls ``agent`` or ``admin``."""
    agents = {user for user, role in roles.items() if role in ("agent", "admin")}
    for audit in audits:
        items = audit.get("events")
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, Mapping):
                continue
            if text(item.get("field_name")) == "assignee_id":
                agents |= {
                    v for v in (text(item.get("value")), text(item.get("previous_value"))) if v
                }
            if text(item.get("type")) == "Comment" and item.get("public") is False:
                author = text(item.get("author_id")) or text(audit.get("author_id"))
                agents |= {author} if author else set()
    return agents


def _channel(obj: Mapping[str, Any]) -> str | None:
    via = obj.get("via")
    return text(via.get("channel")) if isinstance(via, Mapping) else None


def _by_customer(
    author: str | None,
    audit: Mapping[str, Any],
    known: Mapping[str, Any],
    agents: set[str],
    roles: Mapping[str, str],
) -> bool:
    """Whether a public comment's author is the customer (the rule in the module docstring)."""
    if author is None:
        return False
    requester, assignee = text(known["requester_id"]), text(known["assignee_id"])
    if requester is not None:
        return author == requester and author != assignee
    if author in roles:
        return roles[author] == "end-user"
    return author not in agents and author != assignee and _channel(audit) not in _AGENT_CHANNELS


def _audits(
    raw: list[Any], ticket: Mapping[str, Any] | None, roles: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Walk audits oldest first, learning the requester, assignee, tags and subject."""
    audits = sorted(
        (as_map(a, "audits[]") for a in raw), key=lambda a: str(a.get("created_at") or "")
    )
    roles = roles or {}
    agents = _agents(audits, roles)
    known: dict[str, Any] = {
        "requester_id": text((ticket or {}).get("requester_id")),
        "assignee_id": text((ticket or {}).get("assignee_id")),
        "external_id": text((ticket or {}).get("external_id")),
        "tags": list((ticket or {}).get("tags") or []),
        "subject": (ticket or {}).get("subject"),
    }
    events: list[dict[str, Any]] = []
    for audit in audits:
        tid = need(audit, "ticket_id", "audit")
        at = iso(audit.get("created_at"), "audit.created_at")
        items = [as_map(e, "audit.events[]") for e in as_list(audit.get("events") or [], "events")]
        created = False
        for item in items:
            field = text(item.get("field_name"))
            kind = text(item.get("type"))
            created = created or kind == "Create"
            if kind in ("Create", "Change") and field:
                value = item.get("value")
                known[field] = list(value) if isinstance(value, list) else text(value)
        order = _order(tid, known["external_id"], known["tags"] or [], known["subject"])
        if created:
            if ticket is None:
                events.append(
                    event(
                        id=f"{SOURCE}:zendesk:ticket-{tid}",
                        source=SOURCE,
                        type="ticket.created",
                        occurred_at=at,
                        order=order,
                        data={
                            "ticket_id": tid,
                            "helpdesk": "zendesk",
                            "subject": clip(text(known["subject"])),
                            "status": text(known.get("status")),
                            "priority": text(known.get("priority")),
                            "ticket_type": text(known.get("type")),
                            "requester_id": known["requester_id"],
                        },
                    )
                )
            continue  # the creation audit's comment is the ticket's description, not a reply
        for item in items:
            if text(item.get("type")) != "Comment" or item.get("public") is not True:
                continue
            author = text(item.get("author_id")) or text(audit.get("author_id"))
            if not _by_customer(author, audit, known, agents, roles):
                continue
            cid = need(item, "id", "comment")
            events.append(
                event(
                    id=f"{SOURCE}:zendesk:comment-{cid}",
                    source=SOURCE,
                    type="customer.replied",
                    occurred_at=at,
                    order=order,
                    data={
                        "ticket_id": tid,
                        "helpdesk": "zendesk",
                        "comment_id": cid,
                        "message": clip(text(item.get("body")), 4000),
                    },
                )
            )
    return events
