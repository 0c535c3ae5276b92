"""An emulator of the parts of the Stripe API the desk's payment connector uses, over real HTTP.

Form-encoded bodies (``metadata[intent]=...``) as Stripe takes them, Bearer or Basic auth with
one test key, Stripe's error bodies (``{"error": {"type", "code", "message", "param"}}``) and
status codes (400 invalid request, 401 bad key, 404 unknown object, 429, 5xx):

* PaymentIntents: create (for tests; already confirmed unless ``confirm=false``:
  ``capture_method=manual`` leaves it ``requires_capture``, otherwise it is captured at once),
  retrieve (``expand[]=latest_charge`` embeds the charge), cancel, capture with
  ``amount_to_capture`` (400 ``charge_expired_for_capture`` once the authorization expired),
  confirm (``payment_method``, else the one attached; ``off_session``): it succeeds, unless
  ``decline_next`` scripted declines for it: then the attempt fails as the issuer declines it,
  HTTP 402 ``card_error`` with ``decline_code``, ``charge`` and the ``payment_intent`` (back to
  ``requires_payment_method``, its payment method detached and named in
  ``last_payment_error.payment_method``). A confirmed PaymentIntent has one succeeded charge
  (``latest_charge``), an unconfirmed one none until it is paid or declined.
* Charges: retrieve. An authorization's charge carries
  ``payment_method_details.card.capture_before`` (``authorization_window``, 7 days, after it).
* Refunds: create on a ``payment_intent`` or a ``charge``, ``amount`` in minor units (the
  unrefunded rest when omitted), ``metadata``, ``reason``; refused with 400 ``amount_too_large``
  beyond the captured balance and ``charge_already_refunded`` once nothing is left; retrieve;
  list (newest first, ``payment_intent`` / ``charge`` filters, ``limit`` / ``starting_after``
  paging). Stripe has no search for refunds: a refund is found by its metadata by listing the
  payment's refunds.
* Disputes (made by ``open_dispute``): retrieve, list (newest first, ``payment_intent`` /
  ``charge`` filters), update (``evidence[...]`` text fields merged into ``evidence``,
  ``metadata``, ``submit``): any evidence sets ``evidence_details.has_evidence``; only
  ``submit=true`` counts a submission and moves the dispute to ``under_review``
  (``warning_under_review`` for an inquiry). Stripe's 400s: an unknown evidence field, a
  dispute already submitted or closed, a dispute past ``evidence_details.due_by``.
* ``Idempotency-Key`` on POSTs: the same key with the same parameters replays the first
  (successful or declined: a 402 is kept too) answer, header ``Idempotent-Replayed: true``; the
  same key with other parameters is Stripe's 400 ``idempotency_error``.

State is in memory, behind one lock (requests are served from several threads). Tests inspect
it with ``refunds()`` / ``payment_intent()`` / ``events()``, seed it with
``create_payment_intent``, act as the cardholder or the card network with ``fail_payment``,
``confirm_payment``, ``decline_next``, ``open_dispute`` and ``early_fraud_warning``, and break it
with ``fail_with`` (every request answers that status until cleared).
``running_stripe_emulator`` serves it with uvicorn on a free loopback port in a thread.

Webhooks (with an ``outbox``, a ``WebhookOutbox("stripe")`` aimed at the desk): every change
queues the Event objects Stripe sends for it (``{"id": "evt_...", "object": "event", "type",
"created", "data": {"object": <a snapshot>, "previous_attributes"?}, "request": {"id",
"idempotency_key"}}``), each with its own stable ``evt_`` id, signed ``Stripe-Signature`` when
sent. Nothing is sent while a request is served: ``deliver_due(now)`` sends what is due, and a
delivery the desk refuses stays and is sent again with the same event id. Objects carry the
metadata Stripe gives them: a charge copies its PaymentIntent's metadata (``order_ref`` ...), a
refund has its own (the desk puts ``order_ref`` and ``intent`` there), a dispute's is empty
unless set, an early fraud warning has none.

* a confirmed PaymentIntent (``create_payment_intent`` or the API): ``charge.succeeded`` and
  ``payment_intent.succeeded`` (automatic capture) or ``payment_intent.amount_capturable_updated``
  (manual capture);
* ``fail_payment`` (a declined attempt on an unconfirmed PaymentIntent, ``confirm=False``):
  ``charge.failed`` (the failed charge) and ``payment_intent.payment_failed`` with
  ``last_payment_error``, both for the one decline; ``confirm_payment`` then pays it (the events
  of a confirmed PaymentIntent); the API's confirm sends the same events, declined or paid;
* cancel: ``payment_intent.canceled``; capture: ``charge.captured`` and
  ``payment_intent.succeeded``;
* a refund: ``charge.refunded`` (the charge with ``amount_refunded``, and its ``refunds`` list
  when the account's ``api_version`` is before 2022-11-15, as ``API_VERSION`` is by default;
  later versions leave the list out) and ``refund.created``;
* ``open_dispute``: ``charge.dispute.created`` (``evidence_details.due_by``); an update:
  ``charge.dispute.updated`` (with ``previous_attributes``);
* ``early_fraud_warning``: ``radar.early_fraud_warning.created``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from recoverydesk.sandbox.serving import serve_app
from recoverydesk.sandbox.webhook_outbox import DeliveryResult, WebhookOutbox

TEST_KEY = "sk_test_x"
CARD = "pm_card_visa"  # the payment method a confirmed PaymentIntent is paid with
# How long a card authorization can be captured (``payment_method_details.card.capture_before``)
AUTHORIZATION_WINDOW = timedelta(days=7)
API_VERSION = "2022-08-01"  # the version the emulated account's events are rendered in
# From this version on, a charge no longer embeds its ``refunds`` list.
_CHARGE_REFUNDS_DROPPED = "2022-11-15"
WEBHOOK_USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
_UNCONFIRMED = frozenset(
    {"requires_payment_method", "requires_confirmation", "requires_action", "processing"}
)
_CONFIRMABLE = frozenset({"requires_payment_method", "requires_confirmation", "requires_action"})
_CANCELABLE = frozenset(
    {
        "requires_payment_method",
        "requires_capture",
        "requires_confirmation",
        "requires_action",
        "processing",
    }
)


class StripeProblem(Exception):
    """An error answer in Stripe's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = (
            status,
            message,
            kind,
            code,
            param,
        )
        self.extra = dict(extra or {})  # a card error's decline_code, charge, payment_intent ...

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.kind, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            error["param"] = self.param
        return {"error": {**error, **self.extra}}


@dataclass(frozen=True, slots=True)
class Decline:
    """How the card issuer declines a payment attempt."""

    code: str = "card_declined"
    decline_code: str | None = "generic_decline"
    message: str = "Your card was declined."


@dataclass(frozen=True, slots=True)
class _Stored:
    """An idempotent request's first answer."""

    fingerprint: str
    status: int
    body: dict[str, Any]


def nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding to a dict: ``metadata[intent]=x`` -> ``{"metadata": {"intent":
    "x"}}``, ``expand[0]=a`` -> ``{"expand": {"0": "a"}}`` (indices stay keys)."""
    out: dict[str, Any] = {}
    for raw_key, value in pairs:
        head, _, rest = raw_key.partition("[")
        parts = [head] + [p.rstrip("]") for p in rest.split("[")] if rest else [head]
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return out


def _integer(params: dict[str, Any], name: str, *, required: bool = False) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise StripeProblem(400, f"Missing required param: {name}.", code="parameter_missing")
        return None
    try:
        number = int(str(value))
    except ValueError:
        raise StripeProblem(
            400, f"Invalid integer: {value}", code="parameter_invalid_integer", param=name
        ) from None
    if number < 1:
        raise StripeProblem(
            400,
            "This value must be greater than or equal to 1.",
            code="parameter_invalid_integer",
            param=name,
        )
    return number


def _metadata(params: dict[str, Any]) -> dict[str, str]:
    meta = params.get("metadata")
    if meta is None or meta == "":
        return {}
    if not isinstance(meta, dict):
        raise StripeProblem(
            400, "Invalid object", code="parameter_invalid_object", param="metadata"
        )
    return {str(k): str(v) for k, v in meta.items() if v != ""}


def _wall_clock() -> datetime:
    return datetime.now(UTC)


class StripeEmulator:
    """The emulated account: its objects, its idempotency records, its injected failures, and
    (with an ``outbox``) the webhooks its changes send."""

    def __init__(
        self,
        api_key: str = TEST_KEY,
        *,
        outbox: WebhookOutbox | None = None,
        clock: Callable[[], datetime] = _wall_clock,
        api_version: str = API_VERSION,
    ) -> None:
        self.api_key = api_key
        self.outbox = outbox
        self.api_version = api_version
        self._clock = clock
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._intents: dict[str, dict[str, Any]] = {}
        self._charges: dict[str, dict[str, Any]] = {}
        self._refunds: dict[str, dict[str, Any]] = {}  # in creation order
        self._disputes: dict[str, dict[str, Any]] = {}
        self._declines: dict[str, list[Decline]] = {}  # by PaymentIntent: its next confirmations
        self.authorization_window = AUTHORIZATION_WINDOW
        self._events: list[dict[str, Any]] = []  # every event, in creation order
        self._idempotent: dict[str, _Stored] = {}
        self._failure: int | None = None
        self._serving: tuple[str | None, str | None] = (None, None)  # request id, its key
        # every request: (method, path, Idempotency-Key header or None)
        self.requests: list[tuple[str, str, str | None]] = []

    # -- for tests -----------------------------------------------------------------------------

    def create_payment_intent(
        self,
        amount: int,
        currency: str = "usd",
        *,
        capture: bool = True,
        metadata: dict[str, str] | None = None,
        confirm: bool = True,
    ) -> dict[str, Any]:
        """A PaymentIntent, confirmed and paid unless ``confirm=False`` (then it waits for a
        payment method: ``fail_payment`` or ``confirm_payment`` decide how the attempt ends)."""
        params: dict[str, Any] = {
            "amount": str(amount),
            "currency": currency,
            "capture_method": "automatic" if capture else "manual",
            "metadata": dict(metadata or {}),
            "confirm": "true" if confirm else "false",
        }
        with self._lock:
            return self._create_intent(params)

    def fail_payment(
        self,
        intent_id: str,
        *,
        code: str = "card_declined",
        decline_code: str | None = "generic_decline",
        message: str = "Your card was declined.",
        payment_method: str = CARD,
    ) -> dict[str, Any]:
        """The customer's payment attempt (with ``payment_method``) on an unconfirmed
        PaymentIntent is declined: a failed charge, ``last_payment_error`` (naming the payment
        method), status ``requires_payment_method`` and the webhooks ``charge.failed`` and
        ``payment_intent.payment_failed``."""
        with self._lock:
            intent = self._waiting_intent(intent_id)
            intent["payment_method"] = payment_method
            self._decline(intent, Decline(code, decline_code, message))
            return copy.deepcopy(intent)

    def decline_next(self, intent_id: str, count: int = 1, decline: Decline = Decline()) -> None:
        """The next ``count`` confirmations of this PaymentIntent through the API are declined
        (402 ``card_error``, as the issuer answers); later ones succeed."""
        with self._lock:
            self._intent(intent_id)
            self._declines.setdefault(intent_id, []).extend([decline] * count)

    def confirm_payment(self, intent_id: str) -> dict[str, Any]:
        """The customer pays an unconfirmed PaymentIntent (after a decline, say): a succeeded
        charge and the webhooks of a confirmed PaymentIntent."""
        with self._lock:
            intent = self._waiting_intent(intent_id)
            self._confirm(intent)
            return copy.deepcopy(intent)

    def open_dispute(
        self,
        intent_id: str,
        *,
        reason: str = "fraudulent",
        amount: int | None = None,
        inquiry: bool = False,
        due_in_days: int = 7,
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The cardholder disputes the PaymentIntent's captured charge (``amount`` defaults to
        what was captured): ``charge.dispute.created``, evidence due at the end of the day
        ``due_in_days`` from now (UTC). An ``inquiry`` is a ``warning_needs_response``. The
        dispute's metadata is its own (empty, as Stripe creates it)."""
        with self._lock:
            intent = self._intent(intent_id)
            charge = self._charges.get(intent.get("latest_charge") or "")
            if charge is None or not charge["captured"]:
                raise ValueError(f"{intent_id} has no captured charge to dispute")
            disputed = charge["amount_captured"] if amount is None else amount
            if not 0 < disputed <= charge["amount_captured"]:
                raise ValueError(f"a dispute of {disputed} on a charge of {charge['amount']}")
            now = self._clock()
            due = (now + timedelta(days=due_in_days)).replace(
                hour=23, minute=59, second=59, microsecond=0
            )
            dispute: dict[str, Any] = {
                "id": self._id("dp"),
                "object": "dispute",
                "amount": disputed,
                "balance_transactions": [],
                "charge": charge["id"],
                "payment_intent": intent["id"],
                "currency": charge["currency"],
                "created": int(now.timestamp()),
                "evidence": {},
                "evidence_details": {
                    "due_by": int(due.astimezone(UTC).timestamp()),
                    "has_evidence": False,
                    "past_due": False,
                    "submission_count": 0,
                },
                "is_charge_refundable": inquiry,
                "livemode": False,
                "metadata": dict(metadata or {}),
                "reason": reason,
                "status": "warning_needs_response" if inquiry else "needs_response",
            }
            self._disputes[dispute["id"]] = dispute
            charge["disputed"] = True
            self._emit("charge.dispute.created", dispute)
            return copy.deepcopy(dispute)

    def early_fraud_warning(
        self, intent_id: str, *, fraud_type: str = "made_with_stolen_card", actionable: bool = True
    ) -> dict[str, Any]:
        """The card network reports the PaymentIntent's charge as fraud:
        ``radar.early_fraud_warning.created`` (an object without metadata)."""
        with self._lock:
            intent = self._intent(intent_id)
            charge_id = intent.get("latest_charge")
            if charge_id is None:
                raise ValueError(f"{intent_id} has no charge")
            warning: dict[str, Any] = {
                "id": self._id("issfr"),
                "object": "radar.early_fraud_warning",
                "actionable": actionable,
                "charge": charge_id,
                "payment_intent": intent["id"],
                "created": self._timestamp(),
                "fraud_type": fraud_type,
                "livemode": False,
            }
            self._emit("radar.early_fraud_warning.created", warning)
            return copy.deepcopy(warning)

    def dispute(self, dispute_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._disputes[dispute_id])

    def events(self) -> list[dict[str, Any]]:
        """Every Event object the account made (sent or not), oldest first."""
        with self._lock:
            return copy.deepcopy(self._events)

    def deliver_due(self, now: datetime | None = None) -> list[DeliveryResult]:
        """Send the webhooks due at ``now`` (the emulator's clock when not given) to the desk."""
        if self.outbox is None:
            return []
        return self.outbox.deliver_due(now or self._clock())

    def payment_intent(self, intent_id: str) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self._intents[intent_id]))  # type: ignore[no-any-return]

    def refunds(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r, metadata=dict(r["metadata"])) for r in self._refunds.values()]

    def fail_with(self, status: int | None) -> None:
        """Answer every request with this status (500, 503, 429 ...) until set back to None."""
        with self._lock:
            self._failure = status

    # -- the API ------------------------------------------------------------------------------

    def app(self) -> Starlette:
        routes = [
            Route("/v1/payment_intents", self._endpoint(self._create_intent), methods=["POST"]),
            Route(
                "/v1/payment_intents/{id}",
                self._endpoint(self._retrieve_intent),
                methods=["GET"],
            ),
            Route(
                "/v1/payment_intents/{id}/cancel",
                self._endpoint(self._cancel_intent),
                methods=["POST"],
            ),
            Route(
                "/v1/payment_intents/{id}/confirm",
                self._endpoint(self._confirm_intent),
                methods=["POST"],
            ),
            Route(
                "/v1/payment_intents/{id}/capture",
                self._endpoint(self._capture_intent),
                methods=["POST"],
            ),
            Route("/v1/charges/{id}", self._endpoint(self._retrieve_charge), methods=["GET"]),
            Route("/v1/refunds", self._endpoint(self._create_refund), methods=["POST"]),
            Route("/v1/refunds", self._endpoint(self._list_refunds), methods=["GET"]),
            Route("/v1/refunds/{id}", self._endpoint(self._retrieve_refund), methods=["GET"]),
            Route("/v1/disputes", self._endpoint(self._list_disputes), methods=["GET"]),
            Route("/v1/disputes/{id}", self._endpoint(self._retrieve_dispute), methods=["GET"]),
            Route("/v1/disputes/{id}", self._endpoint(self._update_dispute), methods=["POST"]),
        ]
        return Starlette(routes=routes)

    def _endpoint(self, handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            body = (await request.body()).decode("utf-8")
            source = body if request.method == "POST" else str(request.url.query)
            pairs = parse_qsl(source, keep_blank_values=True)
            params = nest(pairs)
            if "id" in request.path_params:
                params["__id"] = request.path_params["id"]
            key = request.headers.get("idempotency-key")
            auth = request.headers.get("authorization", "")
            return self._serve(
                method=request.method,
                path=request.url.path,
                auth=auth,
                key=key,
                params=params,
                handler=handler,
            )

        return endpoint

    def _serve(
        self,
        *,
        method: str,
        path: str,
        auth: str,
        key: str | None,
        params: dict[str, Any],
        handler: Any,
    ) -> Response:
        with self._lock:
            self.requests.append((method, path, key))
            request_id = f"req_emu{next(self._ids):08d}"
            headers = {"Request-Id": request_id}
            self._serving = (request_id, key)
            try:
                if self._failure is not None:
                    raise _failure(self._failure)
                self._authenticate(auth)
                if method == "POST" and key:
                    fingerprint = _fingerprint(method, path, params)
                    stored = self._idempotent.get(key)
                    if stored is not None:
                        if stored.fingerprint != fingerprint:
                            raise StripeProblem(
                                400,
                                "Keys for idempotent requests can only be used with the same "
                                "parameters they were first used with. Try using a key other "
                                f"than '{key}' if you meant to execute a different request.",
                                kind="idempotency_error",
                            )
                        replay = {**headers, "Idempotent-Replayed": "true", "Idempotency-Key": key}
                        return JSONResponse(stored.body, stored.status, headers=replay)
                    result = self._first_time(key, fingerprint, handler, params)
                    return JSONResponse(result, 200, headers={**headers, "Idempotency-Key": key})
                return JSONResponse(handler(params), 200, headers=headers)
            except StripeProblem as problem:
                return JSONResponse(problem.body(), problem.status, headers=headers)
            finally:
                self._serving = (None, None)

    def _first_time(
        self, key: str, fingerprint: str, handler: Any, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Run an idempotent request and keep its answer under the key: a success, or a card
        error (a declined attempt happened: Stripe replays the 402, it does not try again)."""
        try:
            result: dict[str, Any] = handler(params)
        except StripeProblem as problem:
            if problem.status == 402:
                self._idempotent[key] = _Stored(fingerprint, 402, problem.body())
            raise
        self._idempotent[key] = _Stored(fingerprint, 200, result)
        return result

    def _authenticate(self, auth: str) -> None:
        scheme, _, credential = auth.partition(" ")
        given: str | None = None
        if scheme.lower() == "bearer":
            given = credential.strip()
        elif scheme.lower() == "basic":
            try:
                given = base64.b64decode(credential).decode("utf-8").partition(":")[0]
            except ValueError:
                given = None
        if not given:
            raise StripeProblem(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY').",
            )
        if given != self.api_key:
            shown = f"{given[:8]}{'*' * 12}{given[-4:]}" if len(given) > 12 else "****"
            raise StripeProblem(401, f"Invalid API Key provided: {shown}")

    def _id(self, prefix: str) -> str:
        return f"{prefix}_emu{next(self._ids):010d}"

    def _timestamp(self) -> int:
        return int(self._clock().timestamp())

    # Events

    def _emit(self, kind: str, obj: dict[str, Any], previous: dict[str, Any] | None = None) -> None:
        """Record the Event for a change (a snapshot of ``obj`` now) and queue its webhook."""
        request_id, key = self._serving
        data: dict[str, Any] = {"object": copy.deepcopy(obj)}
        if previous:
            data["previous_attributes"] = dict(previous)
        event: dict[str, Any] = {
            "id": self._id("evt"),
            "object": "event",
            "api_version": self.api_version,
            "created": self._timestamp(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1 if self.outbox is not None else 0,
            "request": {"id": request_id, "idempotency_key": key},
            "type": kind,
        }
        self._events.append(event)
        if self.outbox is not None:
            self.outbox.put(
                event["id"],
                kind,
                event,
                due_at=self._clock(),
                headers={"User-Agent": WEBHOOK_USER_AGENT},
            )

    # PaymentIntents and charges

    def _create_intent(self, params: dict[str, Any]) -> dict[str, Any]:
        amount = _integer(params, "amount", required=True)
        assert amount is not None
        currency = str(params.get("currency") or "").lower()
        if len(currency) != 3:
            raise StripeProblem(400, "Missing required param: currency.", code="parameter_missing")
        manual = params.get("capture_method") == "manual"
        method = str(params.get("payment_method") or "") or None
        intent: dict[str, Any] = {
            "id": self._id("pi"),
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "currency": currency,
            "capture_method": "manual" if manual else "automatic",
            "status": "requires_confirmation" if method else "requires_payment_method",
            "payment_method": method,
            "latest_charge": None,
            "last_payment_error": None,
            "metadata": _metadata(params),
            "cancellation_reason": None,
            "canceled_at": None,
            "created": self._timestamp(),
            "livemode": False,
        }
        self._intents[intent["id"]] = intent
        if str(params.get("confirm", "true")).lower() != "false":
            self._confirm(intent)
        return dict(intent)

    def _new_charge(self, intent: dict[str, Any], *, status: str) -> dict[str, Any]:
        """A charge of the PaymentIntent, with a copy of its metadata (as Stripe makes it); an
        authorization (manual capture) can be captured until ``capture_before``."""
        paid = status == "succeeded" and intent["capture_method"] == "automatic"
        held = status == "succeeded" and not paid
        until = self._clock() + self.authorization_window
        charge: dict[str, Any] = {
            "id": self._id("ch"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": intent["amount"] if paid else 0,
            "amount_refunded": 0,
            "captured": paid,
            "refunded": False,
            "disputed": False,
            "currency": intent["currency"],
            "payment_intent": intent["id"],
            "payment_method": intent.get("payment_method"),
            "payment_method_details": {
                "type": "card",
                "card": {
                    "brand": "visa",
                    "last4": "4242",
                    "capture_before": int(until.timestamp()) if held else None,
                },
            },
            "status": status,
            "paid": status == "succeeded",
            "failure_code": None,
            "failure_message": None,
            "metadata": dict(intent["metadata"]),
            "created": self._timestamp(),
            "livemode": False,
        }
        self._charges[charge["id"]] = charge
        return charge

    def _confirm(self, intent: dict[str, Any]) -> None:
        """The payment succeeds: captured at once, or authorized for a manual capture."""
        intent["payment_method"] = intent.get("payment_method") or CARD
        charge = self._new_charge(intent, status="succeeded")
        manual = intent["capture_method"] == "manual"
        intent.update(
            status="requires_capture" if manual else "succeeded",
            amount_capturable=intent["amount"] if manual else 0,
            amount_received=0 if manual else intent["amount"],
            latest_charge=charge["id"],
            last_payment_error=None,
        )
        self._emit("charge.succeeded", charge)
        if manual:
            self._emit("payment_intent.amount_capturable_updated", intent)
        else:
            self._emit("payment_intent.succeeded", intent)

    def _decline(self, intent: dict[str, Any], decline: Decline) -> dict[str, Any]:
        """An attempt with the PaymentIntent's payment method is declined: a failed charge, the
        PaymentIntent back to ``requires_payment_method`` (its payment method detached, named in
        ``last_payment_error``), ``charge.failed`` and ``payment_intent.payment_failed``."""
        charge = self._new_charge(intent, status="failed")
        charge.update(failure_code=decline.code, failure_message=decline.message)
        error: dict[str, Any] = {
            "type": "card_error",
            "code": decline.code,
            "message": decline.message,
            "charge": charge["id"],
            "doc_url": f"https://stripe.com/docs/error-codes/{decline.code.replace('_', '-')}",
            "payment_method": _card(intent["payment_method"] or CARD),
        }
        if decline.decline_code:
            error["decline_code"] = decline.decline_code
        intent.update(
            status="requires_payment_method",
            payment_method=None,
            latest_charge=charge["id"],
            last_payment_error=error,
            amount_capturable=0,
        )
        self._emit("charge.failed", charge)
        self._emit("payment_intent.payment_failed", intent)
        return error

    def _confirm_intent(self, params: dict[str, Any]) -> dict[str, Any]:
        """``/confirm``: pay with ``payment_method`` (else the one attached); the next scripted
        decline (``decline_next``) answers 402 ``card_error`` with the PaymentIntent."""
        intent = self._intent(str(params["__id"]))
        if intent["status"] not in _CONFIRMABLE:
            raise StripeProblem(
                400,
                "You cannot confirm this PaymentIntent because it has a status of "
                f"{intent['status']}.",
                code="payment_intent_unexpected_state",
            )
        if str(params.get("off_session", "false")).lower() not in ("true", "false"):
            raise StripeProblem(
                400, "Invalid boolean", code="parameter_invalid_boolean", param="off_session"
            )
        method = str(params.get("payment_method") or "") or intent["payment_method"]
        if not method:
            raise StripeProblem(
                400,
                "You cannot confirm this PaymentIntent because it's missing a payment method. "
                "Confirm it again directly with a payment method.",
                code="payment_intent_unexpected_state",
                param="payment_method",
            )
        intent["payment_method"] = method
        declines = self._declines.get(intent["id"])
        if declines:
            error = self._decline(intent, declines.pop(0))
            shown = ("charge", "decline_code", "payment_method")
            extra = {k: error[k] for k in shown if k in error}
            raise StripeProblem(
                402,
                error["message"],
                kind="card_error",
                code=error["code"],
                extra={**extra, "payment_intent": self._render(intent, params)},
            )
        self._confirm(intent)
        return self._render(intent, params)

    def _render(self, intent: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        """The PaymentIntent as answered, ``latest_charge`` expanded when ``expand`` asks."""
        shown = copy.deepcopy(intent)
        expand = params.get("expand")
        wanted = expand.values() if isinstance(expand, dict) else [expand]
        if "latest_charge" in wanted and intent["latest_charge"]:
            shown["latest_charge"] = copy.deepcopy(self._charges[intent["latest_charge"]])
        return shown

    def _waiting_intent(self, intent_id: str) -> dict[str, Any]:
        intent = self._intent(intent_id)
        if intent["status"] not in _UNCONFIRMED:
            raise ValueError(
                f"{intent_id} is {intent['status']}: only a PaymentIntent that waits for a "
                "payment can be paid or declined (create it with confirm=False)"
            )
        return intent

    def _intent(self, intent_id: str, param: str = "intent") -> dict[str, Any]:
        intent = self._intents.get(intent_id)
        if intent is None:
            raise StripeProblem(
                404,
                f"No such payment_intent: '{intent_id}'",
                code="resource_missing",
                param=param,
            )
        return intent

    def _retrieve_intent(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._render(self._intent(str(params["__id"])), params)

    def _cancel_intent(self, params: dict[str, Any]) -> dict[str, Any]:
        intent = self._intent(str(params["__id"]))
        if intent["status"] not in _CANCELABLE:
            allowed = ", ".join(sorted(_CANCELABLE))
            raise StripeProblem(
                400,
                "You cannot cancel this PaymentIntent because it has a status of "
                f"{intent['status']}. Only a PaymentIntent with one of the following statuses "
                f"may be canceled: {allowed}.",
                code="payment_intent_unexpected_state",
            )
        reason = params.get("cancellation_reason") or None
        intent.update(
            status="canceled",
            amount_capturable=0,
            cancellation_reason=reason,
            canceled_at=self._timestamp(),
        )
        self._emit("payment_intent.canceled", intent)
        return dict(intent)

    def _capture_intent(self, params: dict[str, Any]) -> dict[str, Any]:
        intent = self._intent(str(params["__id"]))
        if intent["status"] != "requires_capture":
            raise StripeProblem(
                400,
                "This PaymentIntent could not be captured because it has a status of "
                f"{intent['status']}. Only a PaymentIntent with one of the following statuses "
                "may be captured: requires_capture.",
                code="payment_intent_unexpected_state",
            )
        charge = self._charges[intent["latest_charge"]]
        until = charge["payment_method_details"]["card"]["capture_before"]
        if until is not None and self._timestamp() > until:
            raise StripeProblem(
                400,
                "The charge cannot be captured as the authorization has expired.",
                code="charge_expired_for_capture",
            )
        wanted = _integer(params, "amount_to_capture") or intent["amount_capturable"]
        if wanted > intent["amount_capturable"]:
            raise StripeProblem(
                400,
                f"The amount to capture ({wanted}) is greater than the amount capturable "
                f"({intent['amount_capturable']}).",
                code="amount_too_large",
                param="amount_to_capture",
            )
        intent.update(status="succeeded", amount_received=wanted, amount_capturable=0)
        charge.update(captured=True, amount_captured=wanted)
        self._emit("charge.captured", charge, previous={"captured": False, "amount_captured": 0})
        self._emit("payment_intent.succeeded", intent)
        return self._render(intent, params)

    def _retrieve_charge(self, params: dict[str, Any]) -> dict[str, Any]:
        charge = self._charges.get(str(params["__id"]))
        if charge is None:
            raise StripeProblem(
                404, f"No such charge: '{params['__id']}'", code="resource_missing", param="id"
            )
        return dict(charge)

    # Refunds

    def _create_refund(self, params: dict[str, Any]) -> dict[str, Any]:
        charge = self._refund_target(params)
        amount = _integer(params, "amount")
        left = charge["amount_captured"] - charge["amount_refunded"]
        if not charge["captured"]:
            raise StripeProblem(
                400,
                f"Charge {charge['id']} has not been captured: cancel its PaymentIntent instead "
                "of refunding it.",
                code="charge_not_captured",
            )
        if left <= 0:
            raise StripeProblem(
                400,
                f"Charge {charge['id']} has already been refunded.",
                code="charge_already_refunded",
            )
        amount = left if amount is None else amount
        if amount > left:
            raise StripeProblem(
                400,
                f"Refund amount ({_shown(amount, charge['currency'])}) is greater than unrefunded "
                f"amount on charge ({_shown(left, charge['currency'])})",
                code="amount_too_large",
                param="amount",
            )
        reason = params.get("reason") or None
        if reason not in (None, "duplicate", "fraudulent", "requested_by_customer"):
            raise StripeProblem(
                400, f"Invalid reason: {reason}", code="parameter_invalid_string", param="reason"
            )
        metadata = _metadata(params)
        previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount_captured"]
        refund = {
            "id": self._id("re"),
            "object": "refund",
            "amount": amount,
            "charge": charge["id"],
            "payment_intent": charge["payment_intent"],
            "currency": charge["currency"],
            "metadata": metadata,
            "reason": reason,
            "status": "succeeded",
            "created": self._timestamp(),
        }
        self._refunds[refund["id"]] = refund
        self._emit("charge.refunded", self._charge_with_refunds(charge), previous)
        self._emit("refund.created", refund)
        return dict(refund)

    def _charge_with_refunds(self, charge: dict[str, Any]) -> dict[str, Any]:
        """The charge with its ``refunds`` list (newest first), as API versions before
        2022-11-15 render it in ``charge.refunded``; later versions, the bare charge."""
        if self.api_version >= _CHARGE_REFUNDS_DROPPED:
            return charge
        mine = [r for r in reversed(self._refunds.values()) if r["charge"] == charge["id"]]
        return {
            **charge,
            "refunds": {
                "object": "list",
                "data": mine,
                "has_more": False,
                "total_count": len(mine),
                "url": f"/v1/charges/{charge['id']}/refunds",
            },
        }

    def _refund_target(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("payment_intent"):
            intent = self._intent(str(params["payment_intent"]), "payment_intent")
            charge = self._charges.get(intent.get("latest_charge") or "")
            if charge is None or charge["status"] != "succeeded":
                raise StripeProblem(
                    400,
                    f"This PaymentIntent ({intent['id']}) does not have a successful charge to "
                    "refund.",
                    code="payment_intent_unexpected_state",
                    param="payment_intent",
                )
            return charge
        if params.get("charge"):
            charge = self._charges.get(str(params["charge"]))
            if charge is None:
                raise StripeProblem(
                    404,
                    f"No such charge: '{params['charge']}'",
                    code="resource_missing",
                    param="charge",
                )
            return charge
        raise StripeProblem(
            400,
            "One of the following params should be provided for this request: payment_intent "
            "or charge.",
            code="parameter_missing",
        )

    def _retrieve_refund(self, params: dict[str, Any]) -> dict[str, Any]:
        refund = self._refunds.get(str(params["__id"]))
        if refund is None:
            raise StripeProblem(
                404, f"No such refund: '{params['__id']}'", code="resource_missing", param="id"
            )
        return dict(refund)

    def _list_refunds(self, params: dict[str, Any]) -> dict[str, Any]:
        limit = _integer(params, "limit") or 10
        if limit > 100:
            raise StripeProblem(
                400,
                "This value must be less than or equal to 100.",
                code="parameter_invalid_integer",
                param="limit",
            )
        found = [
            r
            for r in reversed(self._refunds.values())
            if all(
                not params.get(name) or r[name] == params[name]
                for name in ("payment_intent", "charge")
            )
        ]
        after = params.get("starting_after")
        if after:
            ids = [r["id"] for r in found]
            if after not in ids:
                raise StripeProblem(
                    400,
                    f"No such refund: '{after}'",
                    code="resource_missing",
                    param="starting_after",
                )
            found = found[ids.index(after) + 1 :]
        page = found[:limit]
        return {
            "object": "list",
            "url": "/v1/refunds",
            "has_more": len(found) > limit,
            "data": [dict(r) for r in page],
        }

    # Disputes

    def _dispute(self, dispute_id: str) -> dict[str, Any]:
        dispute = self._disputes.get(dispute_id)
        if dispute is None:
            raise StripeProblem(
                404, f"No such dispute: '{dispute_id}'", code="resource_missing", param="dispute"
            )
        return dispute

    def _retrieve_dispute(self, params: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(self._dispute(str(params["__id"])))

    def _list_disputes(self, params: dict[str, Any]) -> dict[str, Any]:
        limit = _integer(params, "limit") or 10
        found = [
            d
            for d in reversed(self._disputes.values())
            if all(
                not params.get(name) or d[name] == params[name]
                for name in ("payment_intent", "charge")
            )
        ]
        return {
            "object": "list",
            "url": "/v1/disputes",
            "has_more": len(found) > limit,
            "data": [copy.deepcopy(d) for d in found[:limit]],
        }

    def _update_dispute(self, params: dict[str, Any]) -> dict[str, Any]:
        dispute = self._dispute(str(params["__id"]))
        evidence = params.get("evidence") or {}
        if not isinstance(evidence, dict):
            raise StripeProblem(
                400, "Invalid object", code="parameter_invalid_object", param="evidence"
            )
        for name, value in evidence.items():
            if name not in EVIDENCE_TEXT_FIELDS | EVIDENCE_FILE_FIELDS or isinstance(value, dict):
                raise StripeProblem(
                    400,
                    f"Received unknown parameter: evidence[{name}]",
                    code="parameter_unknown",
                    param=f"evidence[{name}]",
                )
        submit = str(params.get("submit", "false")).lower()
        if submit not in ("true", "false"):
            raise StripeProblem(
                400, f"Invalid boolean: {submit}", code="parameter_invalid_boolean", param="submit"
            )
        if dispute["status"] in _DISPUTE_CLOSED:
            raise StripeProblem(400, "This dispute is already closed")
        if dispute["status"] in _DISPUTE_SUBMITTED:
            raise StripeProblem(
                400,
                "This dispute's evidence has already been submitted and can no longer be updated.",
            )
        details = dispute["evidence_details"]
        if self._timestamp() > details["due_by"]:
            details["past_due"] = True
            raise StripeProblem(
                400,
                "The deadline for submitting evidence for this dispute has passed.",
            )
        previous: dict[str, Any] = {
            "evidence": dict(dispute["evidence"]),
            "evidence_details": dict(details),
        }
        dispute["evidence"].update({k: v if v != "" else None for k, v in evidence.items()})
        dispute["metadata"].update(_metadata(params))
        if any(v for v in dispute["evidence"].values()):
            details["has_evidence"] = True
        if submit == "true":
            previous["status"] = dispute["status"]
            details["submission_count"] += 1
            dispute["status"] = (
                "warning_under_review"
                if dispute["status"] == "warning_needs_response"
                else "under_review"
            )
        self._emit("charge.dispute.updated", dispute, previous)
        return copy.deepcopy(dispute)


EVIDENCE_TEXT_FIELDS = frozenset(
    {
        "access_activity_log",
        "billing_address",
        "cancellation_policy_disclosure",
        "cancellation_rebuttal",
        "customer_email_address",
        "customer_name",
        "customer_purchase_ip",
        "duplicate_charge_explanation",
        "duplicate_charge_id",
        "product_description",
        "refund_policy_disclosure",
        "refund_refusal_explanation",
        "service_date",
        "shipping_address",
        "shipping_carrier",
        "shipping_date",
        "shipping_tracking_number",
        "uncategorized_text",
    }
)
# file ids of uploads (``file_...``); the emulator stores them as given
EVIDENCE_FILE_FIELDS = frozenset(
    {
        "cancellation_policy",
        "customer_communication",
        "customer_signature",
        "duplicate_charge_documentation",
        "receipt",
        "refund_policy",
        "service_documentation",
        "shipping_documentation",
        "uncategorized_file",
    }
)
_DISPUTE_SUBMITTED = frozenset({"under_review", "warning_under_review"})
_DISPUTE_CLOSED = frozenset({"won", "lost", "warning_closed", "prevented"})


def _fingerprint(method: str, path: str, params: dict[str, Any]) -> str:
    text = json.dumps([method, path, params], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _failure(status: int) -> StripeProblem:
    if status == 429:
        return StripeProblem(
            429,
            "Too many requests hit the API too quickly.",
            kind="invalid_request_error",
            code="rate_limit",
        )
    return StripeProblem(
        status,
        "An unknown error occurred while processing your request (emulated).",
        kind="api_error",
    )


def _card(method: str) -> dict[str, Any]:
    """A card PaymentMethod, as an error's ``payment_method`` shows it."""
    return {
        "id": method,
        "object": "payment_method",
        "type": "card",
        "card": {"brand": "visa", "last4": "4242"},
    }


def _shown(minor: int, currency: str) -> str:
    return f"{minor / 100:.2f} {currency.upper()}"


# -- serving it ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunningEmulator:
    emulator: StripeEmulator
    base_url: str


@contextmanager
def running_stripe_emulator(
    api_key: str = TEST_KEY,
    *,
    outbox: WebhookOutbox | None = None,
    clock: Callable[[], datetime] = _wall_clock,
    api_version: str = API_VERSION,
) -> Iterator[RunningEmulator]:
    """The emulator served by uvicorn on a free loopback port, in a thread, while the block
    runs (its webhooks go to ``outbox`` when one is given)."""
    emulator = StripeEmulator(api_key, outbox=outbox, clock=clock, api_version=api_version)
    with serve_app(emulator.app(), "the Stripe emulator") as served:
        yield RunningEmulator(emulator, served.base_url)
