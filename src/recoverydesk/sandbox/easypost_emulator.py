"""An EasyPost emulator (trackers and insurance claims) for the ``easypost`` carrier connector's
tests and local runs (``connectors.easypost``).

The API as EasyPost's ``/v2`` has it: JSON, HTTP Basic auth with the API key as the user name and
no password (401 ``APIKEY.REQUIRED`` / ``APIKEY.INACTIVE`` otherwise); errors are
``{"error": {"code", "message", "errors": [{"field", "message"}]}}``.

- ``POST /v2/trackers`` ``{"tracker": {"tracking_code", "carrier"?}}``: the Tracker of that
  code. As EasyPost does, a second tracker for the same code (and carrier) is not created: the
  existing one is answered. ``GET /v2/trackers/{id}``: the Tracker; 404 ``NOT_FOUND``.
  A tracker's statuses are scripted per tracking code (``script(code, steps)``, each step a
  ``TrackingStep``); ``advance(code)`` moves it to its next step (a new ``tracking_details``
  entry). A code without a script follows EasyPost's test codes: ``EZ1000000001`` pre_transit,
  ``EZ2000000002`` in_transit, ``EZ3000000003`` out_for_delivery, ``EZ4000000004`` delivered,
  ``EZ5000000005`` return_to_sender, ``EZ6000000006`` failure, anything else ``unknown``.
- ``POST /v2/claims`` ``{"tracking_code", "type": damage|loss|theft, "amount", "description"?,
  "contact_email"?, "*_attachments"?}``: 201 a Claim (``clm_...``, ``status: submitted``,
  ``requested_amount``, ``history``). The parcel must be insured (``insure(code, amount)``),
  else 422 ``CLAIM.INSURANCE_NOT_FOUND``; an amount above the insured one is 422
  ``CLAIM.AMOUNT_TOO_HIGH``. EasyPost documents no ``Idempotency-Key`` for claims, so none is
  read: the emulator refuses a second open claim of the same type on the same tracking code
  (422 ``CLAIM.ALREADY_EXISTS``; our assumption of the insurer's review), and the connector reads
  the claims first so a retry never gets there. ``GET /v2/claims``: ``{"claims", "has_more"}``,
  newest first; ``GET /v2/claims/{id}``; ``decide(claim_id, status)`` moves a claim on.

``fail_next(status)`` answers the next calls with that status; ``delay`` slows every answer;
``requests`` keeps every authenticated request (method, path, body) for assertions.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from recoverydesk.sandbox.serving import serve_app

__all__ = [
    "TEST_API_KEY",
    "EasyPostEmulator",
    "RunningEasyPost",
    "TrackingStep",
    "running_easypost_emulator",
]

TEST_API_KEY = "EZTK_emulator_0123456789abcdef"  # the emulator's own key
CLAIM_TYPES = ("damage", "loss", "theft")
_CLOSED_CLAIMS = ("rejected", "cancelled")
_TEST_CODES = {
    "EZ1000000001": "pre_transit",
    "EZ2000000002": "in_transit",
    "EZ3000000003": "out_for_delivery",
    "EZ4000000004": "delivered",
    "EZ5000000005": "return_to_sender",
    "EZ6000000006": "failure",
}


@dataclass(frozen=True, slots=True)
class TrackingStep:
    status: str  # pre_transit, in_transit, out_for_delivery, delivered, failure, ...
    message: str
    status_detail: str = "status_update"
    city: str | None = None
    state: str | None = None
    est_delivery_days: int | None = 2  # from the step's time; None: no estimate


@dataclass
class _Tracker:
    id: str
    code: str
    carrier: str
    steps: list[TrackingStep]
    created_at: datetime
    at: int = 0  # the step reached
    times: list[datetime] = field(default_factory=list)


class _Problem(Exception):
    def __init__(self, status: int, code: str, message: str, field_name: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field_name = status, code, message, field_name

    def answer(self) -> JSONResponse:
        errors = [{"field": self.field_name, "message": self.message}] if self.field_name else []
        body = {"error": {"code": self.code, "message": self.message, "errors": errors}}
        return JSONResponse(body, self.status)


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class EasyPostEmulator:
    def __init__(
        self, api_key: str = TEST_API_KEY, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.api_key = api_key
        self.delay = 0.0
        self.requests: list[dict[str, Any]] = []
        self.trackers: dict[str, _Tracker] = {}  # by tracking code
        self.claims: list[dict[str, Any]] = []  # oldest first
        self.insured: dict[str, Decimal] = {}
        self._scripts: dict[str, list[TrackingStep]] = {}
        self._failures: list[int] = []
        self._clock = clock or (lambda: datetime.now(UTC))
        self._serial = itertools.count(1)
        self._lock = threading.Lock()

    # -- setting the carrier up ------------------------------------------------------------------

    def script(self, code: str, steps: Sequence[TrackingStep]) -> None:
        """The statuses a tracker of ``code`` goes through (it starts at the first)."""
        with self._lock:
            self._scripts[code] = list(steps)

    def advance(self, code: str) -> None:
        with self._lock:
            tracker = self.trackers[code]
            if tracker.at + 1 < len(tracker.steps):
                tracker.at += 1
                tracker.times.append(self._clock())

    def insure(self, code: str, amount: str = "100.00") -> None:
        with self._lock:
            self.insured[code] = Decimal(amount)

    def decide(self, claim_id: str, status: str, detail: str | None = None) -> None:
        with self._lock:
            claim = next(c for c in self.claims if c["id"] == claim_id)
            claim["status"], claim["status_detail"] = status, detail or f"Claim {status}."
            claim["history"].append(
                {
                    "status": status,
                    "status_detail": claim["status_detail"],
                    "timestamp": _time(self._clock()),
                }
            )

    def fail_next(self, status: int, times: int = 1) -> None:
        with self._lock:
            self._failures.extend([status] * times)

    # -- HTTP --------------------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v2/trackers", self._endpoint, methods=["POST"]),
                Route("/v2/trackers/{id}", self._endpoint, methods=["GET"]),
                Route("/v2/claims", self._endpoint, methods=["GET", "POST"]),
                Route("/v2/claims/{id}", self._endpoint, methods=["GET"]),
            ]
        )

    async def _endpoint(self, request: Request) -> JSONResponse:
        if self.delay:
            await asyncio.sleep(self.delay)
        try:
            self._authenticate(request.headers.get("authorization"))
            with self._lock:
                if self._failures:
                    status = self._failures.pop(0)
                    raise _Problem(status, "INTERNAL_SERVER_ERROR", "emulated failure")
            body = await _body(request)
            self.requests.append({"method": request.method, "path": request.url.path, "body": body})
            with self._lock:
                status, answer = self._route(request.method, request.url.path, body)
        except _Problem as problem:
            return problem.answer()
        return JSONResponse(answer, status)

    def _authenticate(self, header: str | None) -> None:
        if not header or not header.lower().startswith("basic "):
            raise _Problem(401, "APIKEY.REQUIRED", "An API key is required for this request.")
        try:
            user = base64.b64decode(header[6:]).decode().split(":", 1)[0]
        except (ValueError, UnicodeDecodeError):
            user = ""
        if user != self.api_key:
            raise _Problem(401, "APIKEY.INACTIVE", "This api key is no longer active.")

    def _route(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        parts = path.strip("/").split("/")  # v2, resource[, id]
        if parts[1] == "trackers":
            if method == "POST":
                return 201, self._create_tracker(body)
            return 200, self._tracker_view(self._tracker_by_id(parts[2]))
        if method == "POST":
            return 201, self._create_claim(body)
        if len(parts) == 3:
            claim = next((c for c in self.claims if c["id"] == parts[2]), None)
            if claim is None:
                raise _Problem(404, "NOT_FOUND", "The requested resource could not be found.")
            return 200, dict(claim)
        return 200, {"claims": [dict(c) for c in reversed(self.claims)], "has_more": False}

    # -- trackers --------------------------------------------------------------------------------

    def _create_tracker(self, body: dict[str, Any]) -> dict[str, Any]:
        given = body.get("tracker")
        code = str(given.get("tracking_code") or "") if isinstance(given, dict) else ""
        if not code:
            raise _Problem(
                422, "TRACKER.TRACKING_CODE.INVALID", "Invalid tracking code.", "tracking_code"
            )
        tracker = self.trackers.get(code)
        if tracker is None:
            carrier = str(given.get("carrier") or "USPS") if isinstance(given, dict) else "USPS"
            steps = self._scripts.get(code) or [_test_step(code)]
            now = self._clock()
            tracker = _Tracker(f"trk_{uuid.uuid4().hex}", code, carrier, steps, now, times=[now])
            self.trackers[code] = tracker
        return self._tracker_view(tracker)

    def _tracker_by_id(self, tracker_id: str) -> _Tracker:
        found = next((t for t in self.trackers.values() if t.id == tracker_id), None)
        if found is None:
            raise _Problem(404, "NOT_FOUND", "The requested resource could not be found.")
        return found

    def _tracker_view(self, tracker: _Tracker) -> dict[str, Any]:
        step, reached = tracker.steps[tracker.at], tracker.times[tracker.at]
        details = [
            _detail(s, t, tracker.carrier)
            for s, t in zip(tracker.steps[: tracker.at + 1], tracker.times, strict=False)
        ]
        estimate = (
            _time(reached + timedelta(days=step.est_delivery_days))
            if step.est_delivery_days is not None
            else None
        )
        return {
            "id": tracker.id,
            "object": "Tracker",
            "mode": "test",
            "tracking_code": tracker.code,
            "status": step.status,
            "status_detail": step.status_detail,
            "created_at": _time(tracker.created_at),
            "updated_at": _time(reached),
            "signed_by": None,
            "weight": None,
            "est_delivery_date": estimate,
            "shipment_id": None,
            "carrier": tracker.carrier,
            "tracking_details": details,
            "fees": [],
            "public_url": f"https://track.easypost.com/emulated/{tracker.id}",
        }

    # -- claims ----------------------------------------------------------------------------------

    def _create_claim(self, body: dict[str, Any]) -> dict[str, Any]:
        code = str(body.get("tracking_code") or "")
        kind = str(body.get("type") or "")
        if not code:
            raise _Problem(422, "CLAIM.INVALID", "tracking_code is required", "tracking_code")
        if kind not in CLAIM_TYPES:
            raise _Problem(
                422, "CLAIM.INVALID", f"type must be one of {', '.join(CLAIM_TYPES)}", "type"
            )
        amount = _amount(body.get("amount"))
        insured = self.insured.get(code)
        if insured is None:
            raise _Problem(
                422, "CLAIM.INSURANCE_NOT_FOUND", f"No insurance found for {code}.", "tracking_code"
            )
        if amount > insured:
            raise _Problem(
                422,
                "CLAIM.AMOUNT_TOO_HIGH",
                f"The claim amount {amount:.2f} exceeds the insured amount {insured:.2f}.",
                "amount",
            )
        for claim in self.claims:
            same = claim["tracking_code"] == code and claim["type"] == kind
            if same and claim["status"] not in _CLOSED_CLAIMS:
                raise _Problem(
                    422,
                    "CLAIM.ALREADY_EXISTS",
                    f"A {kind} claim for {code} already exists ({claim['id']}).",
                    "tracking_code",
                )
        return self._file(code, kind, amount, insured, body)

    def _file(
        self, code: str, kind: str, amount: Decimal, insured: Decimal, body: dict[str, Any]
    ) -> dict[str, Any]:
        now = _time(self._clock())
        claim = {
            "id": f"clm_{next(self._serial):04d}{uuid.uuid4().hex[:28]}",
            "object": "Claim",
            "mode": "test",
            "type": kind,
            "status": "submitted",
            "status_detail": "Claim was created.",
            "status_timestamp": now,
            "tracking_code": code,
            "requested_amount": f"{amount:.2f}",
            "approved_amount": None,
            "insurance_amount": f"{insured:.2f}",
            "description": body.get("description"),
            "contact_email": body.get("contact_email"),
            "recipient_name": body.get("recipient_name"),
            "payment_method": body.get("payment_method") or "easypost_wallet",
            "attachments": [],
            "history": [
                {"status": "submitted", "status_detail": "Claim was created.", "timestamp": now}
            ],
            "created_at": now,
            "updated_at": now,
        }
        self.claims.append(claim)
        return dict(claim)


async def _body(request: Request) -> dict[str, Any]:
    if request.method != "POST":
        return {}
    try:
        body = json.loads(await request.body() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _Problem(400, "BAD_REQUEST", "The request body is not JSON.") from None
    if not isinstance(body, dict):
        raise _Problem(400, "BAD_REQUEST", "The request body is not a JSON object.")
    return body


def _amount(raw: Any) -> Decimal:
    try:
        amount = Decimal(str(raw))
    except InvalidOperation:
        amount = Decimal(0)
    if not amount.is_finite() or amount <= 0:
        raise _Problem(422, "CLAIM.INVALID", "amount must be a positive amount", "amount")
    return amount


def _test_step(code: str) -> TrackingStep:
    status = _TEST_CODES.get(code, "unknown")
    return TrackingStep(status, f"Emulated {status.replace('_', ' ')}")


def _detail(step: TrackingStep, at: datetime, carrier: str) -> dict[str, Any]:
    return {
        "object": "TrackingDetail",
        "message": step.message,
        "description": step.message,
        "status": step.status,
        "status_detail": step.status_detail,
        "datetime": _time(at),
        "source": carrier,
        "carrier_code": "",
        "tracking_location": {
            "object": "TrackingLocation",
            "city": step.city,
            "state": step.state,
            "country": None,
            "zip": None,
        },
    }


@dataclass(frozen=True, slots=True)
class RunningEasyPost:
    emulator: EasyPostEmulator
    base_url: str


@contextmanager
def running_easypost_emulator(
    api_key: str = TEST_API_KEY, *, clock: Callable[[], datetime] | None = None
) -> Iterator[RunningEasyPost]:
    """The emulator served on a free loopback port, in a thread, while the block runs."""
    emulator = EasyPostEmulator(api_key, clock=clock)
    with serve_app(emulator.app(), "the EasyPost emulator") as served:
        yield RunningEasyPost(emulator, served.base_url)
