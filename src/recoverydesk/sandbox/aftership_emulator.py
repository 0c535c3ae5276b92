"""An emulator of the AfterShip Tracking API (v4) and of the webhooks AfterShip sends, for tests
and demos of the desk's ``aftership`` webhook (``connectors.normalize.aftership``).

The API (JSON; the API key in ``as-api-key`` or ``aftership-api-key``; the routes answer at the
root and under ``/v4``, as ``https://api.aftership.com/v4`` does). Answers are
``{"meta": {"code": 200}, "data": {...}}`` (``201`` for a creation); errors are
``{"meta": {"code", "message", "type"}, "data": {}}`` with AfterShip's codes:

- ``POST /trackings`` ``{"tracking": {"tracking_number", "slug", "order_id"?, "order_number"?,
  "title"?, "custom_fields"?}}``: 201 ``{"tracking"}`` with tag ``Pending`` and no checkpoints.
  The same ``slug`` and ``tracking_number`` again is 400 ``4003 Tracking already exists.`` (with
  the existing tracking's ``id`` in ``data.tracking``); a body that is not JSON is 4001, no
  ``tracking`` object 4006, no number 4007, no ``slug`` 4012 (the emulator detects no courier).
- ``GET /trackings/{slug}/{tracking_number}``: ``{"tracking"}``; 404 ``4004`` when unknown.
- ``GET /trackings?tag=&slug=&page=&limit=``: ``{"page", "limit", "count", "tag", "slug",
  "trackings"}``, newest first; ``tag`` and ``slug`` take comma-separated lists, ``count`` is
  the number of matches.
- A missing or wrong key: 401 ``{"meta": {"code": 401, "message": "Invalid API Key.", "type":
  "Unauthorized"}, "data": {}}``.

Time: each tracking plays a *script*, ``Step(after, tag, subtag, message)``s counted from its
creation: ``DELIVERED`` by default (InfoReceived, InTransit, OutForDelivery, Delivered over a
day), or ``LOST`` (``Exception_013``), ``DAMAGED`` (``Exception_012``), ``RETURNED``
(``Exception_011``), ``ADDRESS_INVALID`` (``Exception_007``), ``FAILED_ATTEMPT``
(``AttemptFail``), ``EXPIRED``, or any steps a test writes. A test picks it per tracking number
with ``plan`` (before the tracking is created) or ``add_tracking(script=...)``; a client picks it
on the wire with ``custom_fields.emulator_script`` naming one of ``SCRIPTS``. A tracking shows
the steps due by the later of the emulator's clock and the last ``deliver_due(now)``; each step
appends a checkpoint and sets the tracking's ``tag`` and ``subtag``.

Webhooks: each change of tag queues one AfterShip ``tracking_update``
``{"event", "event_id", "is_tracking_first_tag", "msg": <the tracking as it was then>, "ts"}``,
due at the step's time (``ts``, unix seconds), in a ``WebhookOutbox`` aimed at
``{desk_url}/webhooks/aftership/{merchant}`` and signed as AfterShip signs
(``aftership-hmac-sha256``). ``event_id`` is a UUID made from the tracking and the step, so the
same run gives the same ids. Nothing is sent while a request is served: ``deliver_due(now)``
plays the scripts to ``now`` and sends what is due, oldest first. A delivery the desk does not
answer 2xx stays and is sent again at the next ``deliver_due`` with the same ``event_id`` (AfterShip
backs off between retries; the emulator leaves the pace to its caller).

``fail_next(status)`` answers the next API requests with AfterShip's error of that status (429
``TooManyRequests``, 5xx ``InternalError`` ...); ``latency`` delays every answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route

from recoverydesk.sandbox.serving import serve_app
from recoverydesk.sandbox.webhook_outbox import DeliveryResult, Outgoing, WebhookOutbox

__all__ = [
    "ADDRESS_INVALID",
    "DAMAGED",
    "DELIVERED",
    "EXPIRED",
    "FAILED_ATTEMPT",
    "LOST",
    "RETURNED",
    "SCRIPTS",
    "TAGS",
    "TEST_API_KEY",
    "AfterShipEmulator",
    "DeliveryResult",
    "RunningAfterShip",
    "Step",
    "TrackingExists",
    "running_aftership_emulator",
]

TEST_API_KEY = "as-emulator-key"  # the emulator's own test key
TAGS = (
    "Pending",
    "InfoReceived",
    "InTransit",
    "OutForDelivery",
    "AttemptFail",
    "AvailableForPickup",
    "Delivered",
    "Exception",
    "Expired",
)
_FINAL = frozenset({"Delivered", "Expired"})  # AfterShip stops tracking (``active: false``)
_SUBTAG_MESSAGES = {  # AfterShip's own wording of the subtags the scripts use
    "Pending_001": "No information yet",
    "InfoReceived_001": "Info Received",
    "InTransit_001": "In Transit",
    "InTransit_002": "Acceptance scan",
    "InTransit_007": "Departure Scan",
    "OutForDelivery_001": "Out for Delivery",
    "AttemptFail_001": "Failed Attempt",
    "Delivered_001": "Delivered",
    "Exception_007": "Incorrect Address",
    "Exception_011": "Returned to sender",
    "Exception_012": "Shipment damage",
    "Exception_013": "Shipment lost",
    "Expired_001": "Expired",
}
_ERROR_TYPES = {
    400: "BadRequest",
    401: "Unauthorized",
    402: "PaymentRequired",
    403: "Forbidden",
    404: "NotFound",
    429: "TooManyRequests",
}


@dataclass(frozen=True, slots=True)
class Step:
    """One carrier scan: ``after`` its tracking's creation, the tag and subtag AfterShip gives
    it, and the carrier's message."""

    after: timedelta
    tag: str
    subtag: str
    message: str


def _hours(count: float) -> timedelta:
    return timedelta(hours=count)


_INFO = Step(_hours(1), "InfoReceived", "InfoReceived_001", "Shipment information sent to carrier")
_PICKED_UP = Step(_hours(4), "InTransit", "InTransit_002", "Picked up")
_DEPARTED = Step(_hours(9), "InTransit", "InTransit_007", "Departed origin facility")
_OUT = Step(_hours(20), "OutForDelivery", "OutForDelivery_001", "On vehicle for delivery")
_SHIPPED = (_INFO, _PICKED_UP, _DEPARTED)

DELIVERED = (*_SHIPPED, _OUT, Step(_hours(26), "Delivered", "Delivered_001", "Delivered"))
LOST = (*_SHIPPED, Step(_hours(48), "Exception", "Exception_013", "Shipment lost"))
DAMAGED = (*_SHIPPED, Step(_hours(30), "Exception", "Exception_012", "Package damaged"))
RETURNED = (*_SHIPPED, Step(_hours(30), "Exception", "Exception_011", "Returned to shipper"))
ADDRESS_INVALID = (*_SHIPPED, Step(_hours(12), "Exception", "Exception_007", "Incorrect address"))
FAILED_ATTEMPT = (
    *_SHIPPED,
    _OUT,
    Step(_hours(26), "AttemptFail", "AttemptFail_001", "Customer not available"),
)
EXPIRED = (_INFO, Step(timedelta(days=31), "Expired", "Expired_001", "No update for 30 days"))
SCRIPTS: dict[str, tuple[Step, ...]] = {
    "delivered": DELIVERED,
    "lost": LOST,
    "damaged": DAMAGED,
    "returned": RETURNED,
    "address_invalid": ADDRESS_INVALID,
    "failed_attempt": FAILED_ATTEMPT,
    "expired": EXPIRED,
}


def _checked(script: Sequence[Step]) -> tuple[Step, ...]:
    steps = tuple(script)
    for before, step in zip((None, *steps), steps, strict=False):
        if step.tag not in TAGS or not step.subtag.startswith(f"{step.tag}_"):
            raise ValueError(f"step {step}: unknown tag, or a subtag not of its tag")
        if step.after < timedelta(0) or (before is not None and step.after < before.after):
            raise ValueError("a script's steps must come in time order, from 0 on")
    return steps


class TrackingExists(ValueError):
    """``add_tracking`` of a slug and number the emulator already tracks."""


class _ApiError(Exception):
    def __init__(
        self, status: int, code: int, message: str, data: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.data = dict(data or {})

    def response(self) -> JSONResponse:
        kind = _ERROR_TYPES.get(self.status, "InternalError")
        meta = {"code": self.code, "message": self.message, "type": kind}
        return JSONResponse({"meta": meta, "data": self.data}, status_code=self.status)


def _ok(data: Mapping[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse({"meta": {"code": status}, "data": dict(data)}, status_code=status)


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


@dataclass(slots=True)
class _Tracking:
    id: str
    slug: str
    number: str
    created_at: datetime
    script: tuple[Step, ...]
    order_id: str | None = None
    order_number: str | None = None
    title: str | None = None
    custom_fields: dict[str, Any] | None = None
    reached: int = 0  # the steps played so far
    tags_seen: set[str] = field(default_factory=set)

    @property
    def tag(self) -> str:
        return self.script[self.reached - 1].tag if self.reached else "Pending"

    def due(self) -> datetime | None:
        """When the next step happens (None once the script is over)."""
        if self.reached >= len(self.script):
            return None
        return self.created_at + self.script[self.reached].after

    def view(self) -> dict[str, Any]:
        """The tracking as ``GET /trackings/{slug}/{tracking_number}`` shows it now."""
        played = self.script[: self.reached]
        last = played[-1] if played else None
        updated = self.created_at + last.after if last else self.created_at
        subtag = last.subtag if last else "Pending_001"
        return {
            "id": self.id,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(updated),
            "last_updated_at": _iso(updated),
            "tracking_number": self.number,
            "slug": self.slug,
            "active": self.tag not in _FINAL,
            "title": self.title or self.number,
            "order_id": self.order_id,
            "order_number": self.order_number,
            "custom_fields": self.custom_fields,
            "source": "api",
            "expected_delivery": None,
            "tag": self.tag,
            "subtag": subtag,
            "subtag_message": _SUBTAG_MESSAGES.get(subtag, last.message if last else None),
            "tracked_count": self.reached,
            "checkpoints": [self._checkpoint(step) for step in played],
        }

    def _checkpoint(self, step: Step) -> dict[str, Any]:
        at = _iso(self.created_at + step.after)
        return {
            "slug": self.slug,
            "created_at": at,
            "checkpoint_time": at,
            "message": step.message,
            "tag": step.tag,
            "subtag": step.subtag,
            "subtag_message": _SUBTAG_MESSAGES.get(step.subtag, step.message),
            "location": None,
            "country_iso3": None,
            "raw_tag": step.subtag,
        }


def _tracking_id(slug: str, number: str, created_at: datetime) -> str:
    """24 hex digits like AfterShip's (a MongoDB ObjectId: creation time, then the rest)."""
    rest = hashlib.sha256(f"{slug}/{number}".encode()).hexdigest()[:16]
    return f"{int(created_at.timestamp()) & 0xFFFFFFFF:08x}{rest}"


def _event_id(tracking_id: str, step: int) -> str:
    """A UUID v4 in form (as AfterShip's), derived from the tracking and the step."""
    digest = hashlib.sha256(f"aftership-emulator:{tracking_id}:{step}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


class AfterShipEmulator:
    """One AfterShip account: its trackings, its API key and where its webhooks go.

    ``clock`` is the carriers' time (when steps happen, their checkpoints and ``ts``); the
    webhook signature carries no time. Every public method is safe to call from a test while
    the app serves requests."""

    def __init__(
        self,
        *,
        api_key: str = TEST_API_KEY,
        desk_url: str | None = None,
        merchant: str | None = None,
        secret: str | None = None,
        script: Sequence[Step] = DELIVERED,
        clock: Callable[[], datetime] = _wall_clock,
        http: httpx.Client | None = None,
    ) -> None:
        self.api_key = api_key
        self.script = _checked(script)
        self._clock = clock
        self._lock = threading.RLock()
        self._trackings: dict[tuple[str, str], _Tracking] = {}
        self._plans: dict[str, tuple[Step, ...]] = {}
        self._failures: list[int] = []
        self._played_to: datetime | None = None
        self.outbox = WebhookOutbox("aftership", clock=clock, http=http)
        self.received: list[tuple[str, str]] = []  # (method, path) of authenticated requests
        self.latency = 0.0
        if desk_url and merchant and secret:
            self.configure_desk(desk_url, merchant, secret)
        self.app = Starlette(routes=[*self._routes(), Mount("/v4", routes=self._routes())])

    def _routes(self) -> list[BaseRoute]:
        return [
            Route("/trackings", self._create, methods=["POST"]),
            Route("/trackings", self._list, methods=["GET"]),
            Route("/trackings/{slug}/{tracking_number}", self._get, methods=["GET"]),
        ]

    # -- set-up and inspection (tests) ---------------------------------------------------------

    def configure_desk(self, desk_url: str, merchant: str, secret: str) -> None:
        """Send the webhooks to this desk's ``aftership`` endpoint of ``merchant``."""
        self.outbox.aim(desk_url, merchant, secret)

    def plan(self, tracking_number: str, script: Sequence[Step]) -> None:
        """The script of the tracking ``tracking_number`` will have when it is created."""
        steps = _checked(script)
        with self._lock:
            if any(number == tracking_number for _, number in self._trackings):
                raise ValueError(f"tracking {tracking_number} exists: plan it before creating it")
            self._plans[tracking_number] = steps

    def add_tracking(
        self,
        tracking_number: str,
        slug: str,
        *,
        order_id: str | None = None,
        order_number: str | None = None,
        title: str | None = None,
        custom_fields: Mapping[str, Any] | None = None,
        script: Sequence[Step] | None = None,
    ) -> dict[str, Any]:
        """Create a tracking now (as ``POST /trackings`` does); ``TrackingExists`` if taken."""
        with self._lock:
            if (slug, tracking_number) in self._trackings:
                raise TrackingExists(f"{slug}/{tracking_number} is already tracked")
            now = self._clock()
            planned = self._plans.pop(tracking_number, None)
            tracking = _Tracking(
                id=_tracking_id(slug, tracking_number, now),
                slug=slug,
                number=tracking_number,
                created_at=now,
                script=_checked(script) if script is not None else planned or self.script,
                order_id=order_id,
                order_number=order_number,
                title=title,
                custom_fields=dict(custom_fields) if custom_fields is not None else None,
            )
            self._trackings[(slug, tracking_number)] = tracking
            return tracking.view()

    def tracking(self, slug: str, tracking_number: str) -> dict[str, Any] | None:
        with self._lock:
            self._play(self._clock())
            found = self._trackings.get((slug, tracking_number))
            return found.view() if found else None

    def fail_next(self, status: int, *, count: int = 1) -> None:
        """The next ``count`` API requests are answered ``status`` (a 429, a 5xx ...)."""
        with self._lock:
            self._failures += [status] * count

    @property
    def webhooks_waiting(self) -> list[Outgoing]:
        """The webhooks queued and not taken by the desk yet (due or not)."""
        return self.outbox.waiting

    @property
    def webhooks_sent(self) -> list[dict[str, Any]]:
        """Every webhook body the desk took (2xx), in order."""
        return [json.loads(outgoing.body) for outgoing in self.outbox.sent]

    # -- the passing of time -------------------------------------------------------------------

    def deliver_due(self, now: datetime | None = None) -> list[DeliveryResult]:
        """Play every tracking's script to ``now`` (the emulator's clock by default), then post
        every due webhook to the desk, oldest first. Failed deliveries stay for next time."""
        moment = now or self._clock()
        with self._lock:
            self._play(moment)
        return self.outbox.deliver_due(moment)

    def _play(self, now: datetime) -> None:
        """Play the steps due by ``now`` (under the lock); time never goes back."""
        if self._played_to is None or now > self._played_to:
            self._played_to = now
        for tracking in self._trackings.values():
            due = tracking.due()
            while due is not None and due <= self._played_to:
                before = tracking.tag
                tracking.reached += 1
                if tracking.tag != before:
                    self._queue(tracking, due)
                due = tracking.due()

    def _queue(self, tracking: _Tracking, at: datetime) -> None:
        event_id = _event_id(tracking.id, tracking.reached)
        body = {
            "event": "tracking_update",
            "event_id": event_id,
            "is_tracking_first_tag": tracking.tag not in tracking.tags_seen,
            "msg": tracking.view(),
            "ts": int(at.timestamp()),
        }
        tracking.tags_seen.add(tracking.tag)
        self.outbox.put(event_id, tracking.tag, body, due_at=at)

    # -- the API -------------------------------------------------------------------------------

    async def _guard(self, request: Request) -> None:
        if self.latency:
            await asyncio.sleep(self.latency)
        key = request.headers.get("as-api-key") or request.headers.get("aftership-api-key")
        if key != self.api_key:
            raise _ApiError(401, 401, "Invalid API Key.")
        with self._lock:
            self.received.append((request.method, request.url.path))
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            raise _ApiError(failure, failure, f"AfterShip answered {failure} (injected).")

    async def _create(self, request: Request) -> JSONResponse:
        try:
            await self._guard(request)
            given = await _tracking_object(request)
            view = self._create_from(given)
        except _ApiError as error:
            return error.response()
        return _ok({"tracking": view}, 201)

    def _create_from(self, given: Mapping[str, Any]) -> dict[str, Any]:
        number, slug = _required(given)
        try:
            return self.add_tracking(
                number,
                slug,
                order_id=_optional_text(given.get("order_id")),
                order_number=_optional_text(given.get("order_number")),
                title=_optional_text(given.get("title")),
                custom_fields=_custom_fields(given.get("custom_fields")),
                script=_named_script(given.get("custom_fields")),
            )
        except TrackingExists:
            with self._lock:
                tracking_id = self._trackings[(slug, number)].id
            data = {"tracking": {"id": tracking_id, "slug": slug, "tracking_number": number}}
            raise _ApiError(400, 4003, "Tracking already exists.", data) from None

    async def _get(self, request: Request) -> JSONResponse:
        try:
            await self._guard(request)
            slug, number = request.path_params["slug"], request.path_params["tracking_number"]
            view = self.tracking(slug, number)
            if view is None:
                raise _ApiError(404, 4004, "Tracking does not exist.")
        except _ApiError as error:
            return error.response()
        return _ok({"tracking": view})

    async def _list(self, request: Request) -> JSONResponse:
        try:
            await self._guard(request)
            query = request.query_params
            page, limit = (
                _positive(query.get("page"), 1),
                min(_positive(query.get("limit"), 100), 200),
            )
        except _ApiError as error:
            return error.response()
        tags, slugs = _csv(query.get("tag")), _csv(query.get("slug"))
        with self._lock:
            self._play(self._clock())
            found = [
                t.view()
                for t in reversed(self._trackings.values())
                if (not tags or t.tag in tags) and (not slugs or t.slug in slugs)
            ]
        data = {
            "page": page,
            "limit": limit,
            "count": len(found),
            "tag": query.get("tag", ""),
            "slug": query.get("slug", ""),
            "trackings": found[(page - 1) * limit : page * limit],
        }
        return _ok(data)


async def _tracking_object(request: Request) -> Mapping[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise _ApiError(400, 4001, "Invalid JSON data.") from None
    tracking = body.get("tracking") if isinstance(body, dict) else None
    if not isinstance(tracking, dict):
        raise _ApiError(400, 4006, "`tracking` object is required.")
    return tracking


def _required(tracking: Mapping[str, Any]) -> tuple[str, str]:
    number = _optional_text(tracking.get("tracking_number"))
    if number is None:
        raise _ApiError(400, 4007, "`tracking_number` is required.")
    slug = _optional_text(tracking.get("slug"))
    if slug is None:
        raise _ApiError(400, 4012, "Cannot detect courier. Give the `slug`.")
    return number, slug.lower()


def _optional_text(value: object) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return (value.strip() or None) if isinstance(value, str) else None


def _custom_fields(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _ApiError(400, 4008, "The value of `custom_fields` is invalid.")
    return value


def _named_script(value: object) -> tuple[Step, ...] | None:
    name = value.get("emulator_script") if isinstance(value, dict) else None
    if name is None:
        return None
    if name not in SCRIPTS:
        known = ", ".join(sorted(SCRIPTS))
        raise _ApiError(400, 4008, f"The value of `emulator_script` is invalid (use {known}).")
    return SCRIPTS[name]


def _positive(raw: str | None, default: int) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise _ApiError(400, 4008, f"The value of {raw!r} is invalid (a positive integer).")
    return int(raw)


def _csv(raw: str | None) -> set[str]:
    return {part.strip() for part in (raw or "").split(",") if part.strip()}


# -- running it ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunningAfterShip:
    emulator: AfterShipEmulator
    base_url: str


@contextmanager
def running_aftership_emulator(emulator: AfterShipEmulator) -> Iterator[RunningAfterShip]:
    """Serve the emulator with uvicorn on a free loopback port, in a daemon thread, while the
    block runs (tests call ``deliver_due`` themselves)."""
    with serve_app(emulator.app, "the AfterShip emulator") as served:
        yield RunningAfterShip(emulator, served.base_url)
