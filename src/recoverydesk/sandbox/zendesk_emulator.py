"""An emulator of the bits of the Zendesk Support API the ``zendesk`` message connector uses
(``connectors.messages``), for tests and demos.

Tickets live in memory. Requests need basic auth ``{email}/token:{token}`` (401
``{"error": "Couldn't authenticate you"}`` otherwise). The API:

- ``GET /api/v2/tickets/{id}.json``: ``{"ticket": {"id", "status", "tags", "subject"}}``; 404
  ``{"error": "RecordNotFound", "description": "Not found"}`` for an unknown ticket.
- ``GET /api/v2/tickets/{id}/comments.json``: ``{"comments": [{"id", "body", "public"}]}``.
- ``PUT /api/v2/tickets/{id}.json`` ``{"ticket": {"comment"?: {"body", "public"?},
  "status"?, "tags"?, "additional_tags"?, "remove_tags"?}}``: 200 ``{"ticket", "audit": {"id",
  "events"}}``. A closed ticket, an unknown status or an empty comment is 422 ``RecordInvalid``.

``rate_limit(count, retry_after)`` answers the next requests 429 with ``Retry-After``;
``fail_next(status)`` answers them with another status (a 5xx ...); ``latency`` delays answers.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from recoverydesk.sandbox.serving import serve_app

__all__ = ["RunningZendesk", "ZendeskEmulator", "serve_zendesk"]

STATUSES = ("new", "open", "pending", "hold", "solved", "closed")


@dataclass
class _Ticket:
    id: int
    subject: str
    status: str = "open"
    tags: list[str] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "subject": self.subject,
            "status": self.status,
            "tags": list(self.tags),
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
    ) -> None:
        self.email, self.token = email, token
        self._lock = threading.RLock()
        self._tickets: dict[int, _Ticket] = {}
        self._failures: list[_Failure] = []
        self._ids = itertools.count(9001)
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
        self, ticket_id: int, *, subject: str = "Cancel my order", status: str = "open"
    ) -> None:
        with self._lock:
            self._tickets[ticket_id] = _Ticket(ticket_id, subject, status)

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
            if comment is not None:
                added = {
                    "id": next(self._ids),
                    "body": str(comment["body"]),
                    "public": bool(comment.get("public", True)),
                }
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
            audit = {"id": next(self._ids), "ticket_id": ticket.id, "events": events}
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
