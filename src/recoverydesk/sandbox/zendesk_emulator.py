"""An emulator of the bits of the Zendesk Support API the ``zendesk`` message connector uses
(``connectors.messages``), for tests and demos.

Tickets live in memory. Requests need basic auth ``{email}/token:{token}`` (401
``{"error": "Couldn't authenticate you"}`` otherwise). The API:

- ``GET /api/v2/tickets/{id}.json``: ``{"ticket": {"id", "status", "tags", "subject",
  "requester_id", "assignee_id", "external_id", "priority", "type", "description", "via",
  "created_at", "updated_at"}}``; 404 ``{"error": "RecordNotFound", "description": "Not found"}``
  for an unknown ticket.
- ``GET /api/v2/tickets/{id}/comments.json``: ``{"comments": [{"id", "author_id", "body",
  "public", "created_at"}]}``.
- ``PUT /api/v2/tickets/{id}.json`` ``{"ticket": {"comment"?: {"body", "public"?},
  "status"?, "tags"?, "additional_tags"?, "remove_tags"?}}``: 200 ``{"ticket", "audit": {"id",
  "ticket_id", "created_at", "author_id", "events"}}``, written by the API user (an agent,
  ``AGENT_ID``). A closed ticket, an unknown status or an empty comment is 422 ``RecordInvalid``.

Tests seed tickets with ``add_ticket`` (already there, no webhook) and act as the customer with
``open_ticket`` and ``customer_replies``.

``rate_limit(count, retry_after)`` answers the next requests 429 with ``Retry-After``;
``fail_next(status)`` answers them with another status (a 5xx ...); ``latency`` delays answers.

Webhooks (with an ``outbox``, a ``WebhookOutbox("zendesk")`` aimed at the desk). A Zendesk
webhook's body is whatever the account's trigger defines; the emulated account has two triggers
whose bodies are the shapes ``connectors.normalize.zendesk`` reads:

- "Ticket is created" (``open_ticket``): ``{"ticket": <the ticket>}``, which the desk reads as
  ``ticket.created``;
- "Ticket is updated, comment is public, current user is (end user)" (``customer_replies``):
  ``{"ticket": <the ticket>, "audit": <the update's audit: the requester's public Comment, and
  the status Change when the reply reopens a pending or solved ticket>}``, which the desk reads
  as ``customer.replied`` (and the already known ``ticket.created``).

Updates by agents, the desk's own through this API among them, fire neither trigger: they send
no webhook. Nothing is sent while a request is served: ``deliver_due(now)`` sends what is due,
signed ``X-Zendesk-Webhook-Signature`` with its timestamp; a delivery the desk refuses stays and
is sent again with the same ``X-Zendesk-Webhook-Invocation-Id``.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from recoverydesk.sandbox.serving import serve_app
from recoverydesk.sandbox.webhook_outbox import DeliveryResult, WebhookOutbox

__all__ = ["RunningZendesk", "ZendeskEmulator", "serve_zendesk"]

STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
AGENT_ID = 20014182  # the user behind the API credentials (an agent)
ACCOUNT_ID = 10001
WEBHOOK_ID = "01EMULATEDZENDESKWEBHOOK"
_REOPENED_BY_REPLY = frozenset({"pending", "solved"})


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class _Ticket:
    id: int
    subject: str
    status: str = "open"
    tags: list[str] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    requester_id: int = 0
    assignee_id: int | None = AGENT_ID
    external_id: str | None = None
    priority: str | None = None
    type: str | None = None
    channel: str = "email"
    created_at: datetime = field(default_factory=_wall_clock)
    updated_at: datetime = field(default_factory=_wall_clock)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "subject": self.subject,
            "status": self.status,
            "tags": list(self.tags),
            "requester_id": self.requester_id,
            "submitter_id": self.requester_id,
            "assignee_id": self.assignee_id,
            "external_id": self.external_id,
            "priority": self.priority,
            "type": self.type,
            "description": self.comments[0]["body"] if self.comments else "",
            "via": {"channel": self.channel},
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True, slots=True)
class _Failure:
    status: int
    retry_after: int | None = None


class ZendeskEmulator:
    def __init__(
        self,
        *,
        email: str = "agent@acme.test",
        token: str = "zd-token",  # noqa: S107 - the emulator's test credentials
        outbox: WebhookOutbox | None = None,
        clock: Callable[[], datetime] = _wall_clock,
    ) -> None:
        self.email, self.token = email, token
        self.outbox = outbox
        self._clock = clock
        self._lock = threading.RLock()
        self._tickets: dict[int, _Ticket] = {}
        self._failures: list[_Failure] = []
        self._ids = itertools.count(9001)
        self._users = itertools.count(30001)  # end users (requesters)
        self._invocations = itertools.count(1)
        self.received: list[tuple[str, str]] = []  # (method, path) of authenticated requests
        self.latency = 0.0
        self.app = Starlette(
            routes=[
                Route("/api/v2/tickets/{ticket_id:int}.json", self._get, methods=["GET"]),
                Route("/api/v2/tickets/{ticket_id:int}.json", self._put, methods=["PUT"]),
                Route(
                    "/api/v2/tickets/{ticket_id:int}/comments.json", self._comments, methods=["GET"]
                ),
            ]
        )

    # -- set-up and inspection (tests) ---------------------------------------------------------

    def add_ticket(
        self,
        ticket_id: int,
        *,
        subject: str = "Cancel my order",
        status: str = "open",
        requester_id: int | None = None,
        external_id: str | None = None,
        tags: Iterable[str] = (),
    ) -> None:
        """A ticket that exists already (no webhook: it was created before the desk listened)."""
        with self._lock:
            now = self._clock()
            self._tickets[ticket_id] = _Ticket(
                ticket_id,
                subject,
                status,
                tags=_tags(list(tags)) or [],
                requester_id=requester_id or next(self._users),
                external_id=external_id,
                created_at=now,
                updated_at=now,
            )

    def open_ticket(
        self,
        subject: str,
        body: str,
        *,
        requester_id: int | None = None,
        external_id: str | None = None,
        tags: Iterable[str] = (),
        priority: str | None = None,
        ticket_type: str | None = None,
    ) -> int:
        """A customer writes in: a new, unassigned ticket whose first public comment (its
        description) is the requester's, and the "Ticket is created" webhook. Its id."""
        with self._lock:
            now = self._clock()
            ticket_id = max(self._tickets, default=0) + 1
            requester = requester_id or next(self._users)
            ticket = _Ticket(
                ticket_id,
                subject,
                "new",
                tags=_tags(list(tags)) or [],
                requester_id=requester,
                assignee_id=None,
                external_id=external_id,
                priority=priority,
                type=ticket_type,
                created_at=now,
                updated_at=now,
            )
            ticket.comments.append(self._comment(body, author=requester, at=now))
            self._tickets[ticket_id] = ticket
            self._webhook("ticket.created", {"ticket": ticket.view()})
            return ticket_id

    def customer_replies(self, ticket_id: int, body: str) -> int:
        """The ticket's requester replies (a public comment; a pending or solved ticket opens
        again), and the "end user commented" webhook. The comment's id."""
        with self._lock:
            ticket = self._tickets.get(ticket_id)
            if ticket is None:
                raise KeyError(f"no ticket {ticket_id}")
            if ticket.status == "closed":
                raise ValueError(f"ticket {ticket_id} is closed: a reply makes a follow-up ticket")
            if not body.strip():
                raise ValueError("a reply cannot be blank")
            now = self._clock()
            comment = self._comment(body, author=ticket.requester_id, at=now)
            ticket.comments.append(comment)
            audit_id = next(self._ids)
            events: list[dict[str, Any]] = [{"type": "Comment", **comment, "audit_id": audit_id}]
            if ticket.status in _REOPENED_BY_REPLY:
                events.append(
                    {
                        "id": next(self._ids),
                        "type": "Change",
                        "field_name": "status",
                        "value": "open",
                        "previous_value": ticket.status,
                    }
                )
                ticket.status = "open"
            ticket.updated_at = now
            audit = {
                "id": audit_id,
                "ticket_id": ticket_id,
                "created_at": _iso(now),
                "author_id": ticket.requester_id,
                "via": {"channel": "email"},
                "events": events,
            }
            self._webhook("ticket.comment_added", {"ticket": ticket.view(), "audit": audit})
            return int(comment["id"])

    def deliver_due(self, now: datetime | None = None) -> list[DeliveryResult]:
        """Send the webhooks due at ``now`` (the emulator's clock when not given) to the desk."""
        if self.outbox is None:
            return []
        return self.outbox.deliver_due(now or self._clock())

    def _comment(self, body: str, *, author: int, at: datetime) -> dict[str, Any]:
        return {
            "id": next(self._ids),
            "author_id": author,
            "body": body,
            "public": True,
            "created_at": _iso(at),
        }

    def _webhook(self, topic: str, body: dict[str, Any]) -> None:
        if self.outbox is None:
            return
        headers = {"X-Zendesk-Account-Id": str(ACCOUNT_ID), "X-Zendesk-Webhook-Id": WEBHOOK_ID}
        invocation = f"{next(self._invocations):012d}"
        self.outbox.put(
            invocation, topic, copy.deepcopy(body), due_at=self._clock(), headers=headers
        )

    def ticket(self, ticket_id: int) -> dict[str, Any] | None:
        with self._lock:
            found = self._tickets.get(ticket_id)
            if found is None:
                return None
            return {**found.view(), "comments": [dict(c) for c in found.comments]}

    def rate_limit(self, count: int = 1, *, retry_after: int = 30) -> None:
        with self._lock:
            self._failures += [_Failure(429, retry_after)] * count

    def fail_next(self, status: int, *, count: int = 1) -> None:
        with self._lock:
            self._failures += [_Failure(status)] * count

    # -- the API -------------------------------------------------------------------------------

    async def _guard(self, request: Request) -> JSONResponse | None:
        if self.latency:
            await asyncio.sleep(self.latency)
        expected = f"{self.email}/token:{self.token}".encode()
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        try:
            given = base64.b64decode(value, validate=True)
        except ValueError:
            given = b""
        if scheme.lower() != "basic" or given != expected:
            return JSONResponse({"error": "Couldn't authenticate you"}, status_code=401)
        with self._lock:
            self.received.append((request.method, request.url.path))
            if self._failures:
                failure = self._failures.pop(0)
                if failure.status == 429:
                    return JSONResponse(
                        {
                            "error": "APIRateLimitExceeded",
                            "description": "Number of allowed API requests per minute exceeded",
                        },
                        status_code=429,
                        headers={"Retry-After": str(failure.retry_after or 30)},
                    )
                return JSONResponse(
                    {"error": "InternalError", "description": "Zendesk is having trouble"},
                    status_code=failure.status,
                )
        return None

    def _found(self, request: Request) -> _Ticket | JSONResponse:
        ticket = self._tickets.get(int(request.path_params["ticket_id"]))
        if ticket is None:
            return JSONResponse(
                {"error": "RecordNotFound", "description": "Not found"}, status_code=404
            )
        return ticket

    async def _get(self, request: Request) -> JSONResponse:
        refused = await self._guard(request)
        if refused is not None:
            return refused
        with self._lock:
            ticket = self._found(request)
            if isinstance(ticket, JSONResponse):
                return ticket
            return JSONResponse({"ticket": ticket.view()})

    async def _comments(self, request: Request) -> JSONResponse:
        refused = await self._guard(request)
        if refused is not None:
            return refused
        with self._lock:
            ticket = self._found(request)
            if isinstance(ticket, JSONResponse):
                return ticket
            return JSONResponse({"comments": [dict(c) for c in ticket.comments]})

    async def _put(self, request: Request) -> JSONResponse:  # noqa: PLR0911 - one answer per case
        refused = await self._guard(request)
        if refused is not None:
            return refused
        try:
            payload = await request.json()
        except ValueError:
            payload = None
        change = payload.get("ticket") if isinstance(payload, dict) else None
        if not isinstance(change, dict):
            return _invalid("ticket", "Ticket is missing")
        with self._lock:
            ticket = self._found(request)
            if isinstance(ticket, JSONResponse):
                return ticket
            if ticket.status == "closed":
                return _invalid("status", "Status: closed prevents ticket update")
            status = change.get("status", ticket.status)
            if status not in STATUSES:
                return _invalid("status", f"Status: {status} is not valid")
            comment = change.get("comment")
            if comment is not None and (
                not isinstance(comment, dict) or not str(comment.get("body") or "").strip()
            ):
                return _invalid("comment", "Comment: cannot be blank")
            events: list[dict[str, Any]] = []
            now = self._clock()
            if comment is not None:
                added = self._comment(str(comment["body"]), author=AGENT_ID, at=now)
                added["public"] = bool(comment.get("public", True))
                ticket.comments.append(added)
                events.append({"type": "Comment", **added})
            tags = _tags(change.get("tags"))
            if tags is not None:
                ticket.tags = tags
            for tag in _tags(change.get("additional_tags")) or []:
                if tag not in ticket.tags:
                    ticket.tags.append(tag)
            removed = set(_tags(change.get("remove_tags")) or [])
            ticket.tags = [t for t in ticket.tags if t not in removed]
            if status != ticket.status:
                events.append({"type": "Change", "field_name": "status", "value": status})
                ticket.status = status
            ticket.updated_at = now
            audit = {
                "id": next(self._ids),
                "ticket_id": ticket.id,
                "created_at": _iso(now),
                "author_id": AGENT_ID,
                "events": events,
            }
            # an agent's update: neither trigger fires, no webhook
            return JSONResponse({"ticket": ticket.view(), "audit": audit})


def _tags(value: object) -> list[str] | None:
    if not isinstance(value, list):
        return None
    return [str(tag).strip().lower().replace(" ", "_") for tag in value if str(tag).strip()]


def _invalid(name: str, description: str) -> JSONResponse:
    return JSONResponse(
        {
            "error": "RecordInvalid",
            "description": "Record validation errors",
            "details": {name: [{"description": description}]},
        },
        status_code=422,
    )


@dataclass
class RunningZendesk:
    emulator: ZendeskEmulator
    base_url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def serve_zendesk(emulator: ZendeskEmulator) -> Iterator[RunningZendesk]:
    """Serve the emulator with uvicorn on a free loopback port, in a daemon thread."""
    with serve_app(emulator.app, "the Zendesk emulator") as served:
        yield RunningZendesk(emulator, served.base_url, served.server, served.thread)
