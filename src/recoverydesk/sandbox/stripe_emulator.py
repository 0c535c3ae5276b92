"""An emulator of the parts of the Stripe API the desk's payment connector uses, over real HTTP.

Form-encoded bodies (``metadata[intent]=...``) as Stripe takes them, Bearer or Basic auth with
one test key, Stripe's error bodies (``{"error": {"type", "code", "message", "param"}}``) and
status codes (400 invalid request, 401 bad key, 404 unknown object, 429, 5xx):

* PaymentIntents: create (for tests; already confirmed: ``capture_method=manual`` leaves it
  ``requires_capture``, otherwise it is captured at once), retrieve, cancel, capture with
  ``amount_to_capture``; every PaymentIntent has one charge (``latest_charge``).
* Charges: retrieve.
* Refunds: create on a ``payment_intent`` or a ``charge``, ``amount`` in minor units (the
  unrefunded rest when omitted), ``metadata``, ``reason``; refused with 400 ``amount_too_large``
  beyond the captured balance and ``charge_already_refunded`` once nothing is left; retrieve;
  list (newest first, ``payment_intent`` / ``charge`` filters, ``limit`` / ``starting_after``
  paging). Stripe has no search for refunds: a refund is found by its metadata by listing the
  payment's refunds.
* ``Idempotency-Key`` on POSTs: the same key with the same parameters replays the first
  (successful) answer, header ``Idempotent-Replayed: true``; the same key with other parameters
  is Stripe's 400 ``idempotency_error``.

State is in memory, behind one lock (requests are served from several threads). Tests inspect
it with ``refunds()`` / ``payment_intent()``, seed it with ``create_payment_intent`` and break
it with ``fail_with`` (every request answers that status until cleared).
``running_stripe_emulator`` serves it with uvicorn on a free loopback port in a thread.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from recoverydesk.sandbox.serving import serve_app

TEST_KEY = "sk_test_x"
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
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = (
            status,
            message,
            kind,
            code,
            param,
        )

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.kind, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            error["param"] = self.param
        return {"error": error}


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


class StripeEmulator:
    """The emulated account: its objects, its idempotency records, its injected failures."""

    def __init__(self, api_key: str = TEST_KEY) -> None:
        self.api_key = api_key
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._intents: dict[str, dict[str, Any]] = {}
        self._charges: dict[str, dict[str, Any]] = {}
        self._refunds: dict[str, dict[str, Any]] = {}  # in creation order
        self._idempotent: dict[str, _Stored] = {}
        self._failure: int | None = None
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
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "amount": str(amount),
            "currency": currency,
            "capture_method": "automatic" if capture else "manual",
            "metadata": dict(metadata or {}),
        }
        with self._lock:
            return self._create_intent(params)

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
                "/v1/payment_intents/{id}/capture",
                self._endpoint(self._capture_intent),
                methods=["POST"],
            ),
            Route("/v1/charges/{id}", self._endpoint(self._retrieve_charge), methods=["GET"]),
            Route("/v1/refunds", self._endpoint(self._create_refund), methods=["POST"]),
            Route("/v1/refunds", self._endpoint(self._list_refunds), methods=["GET"]),
            Route("/v1/refunds/{id}", self._endpoint(self._retrieve_refund), methods=["GET"]),
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
                    result = handler(params)
                    self._idempotent[key] = _Stored(fingerprint, 200, result)
                    return JSONResponse(result, 200, headers={**headers, "Idempotency-Key": key})
                return JSONResponse(handler(params), 200, headers=headers)
            except StripeProblem as problem:
                return JSONResponse(problem.body(), problem.status, headers=headers)

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

    # PaymentIntents and charges

    def _create_intent(self, params: dict[str, Any]) -> dict[str, Any]:
        amount = _integer(params, "amount", required=True)
        assert amount is not None
        currency = str(params.get("currency") or "").lower()
        if len(currency) != 3:
            raise StripeProblem(400, "Missing required param: currency.", code="parameter_missing")
        manual = params.get("capture_method") == "manual"
        intent_id, charge_id = self._id("pi"), self._id("ch")
        now = int(time.time())
        intent: dict[str, Any] = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": amount if manual else 0,
            "amount_received": 0 if manual else amount,
            "currency": currency,
            "capture_method": "manual" if manual else "automatic",
            "status": "requires_capture" if manual else "succeeded",
            "latest_charge": charge_id,
            "metadata": _metadata(params),
            "cancellation_reason": None,
            "canceled_at": None,
            "created": now,
            "livemode": False,
        }
        self._intents[intent_id] = intent
        self._charges[charge_id] = {
            "id": charge_id,
            "object": "charge",
            "amount": amount,
            "amount_captured": 0 if manual else amount,
            "amount_refunded": 0,
            "captured": not manual,
            "refunded": False,
            "currency": currency,
            "payment_intent": intent_id,
            "status": "succeeded",
            "metadata": dict(intent["metadata"]),
            "created": now,
            "livemode": False,
        }
        return dict(intent)

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
        return dict(self._intent(str(params["__id"])))

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
            canceled_at=int(time.time()),
        )
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
        charge = self._charges[intent["latest_charge"]]
        charge.update(captured=True, amount_captured=wanted)
        return dict(intent)

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
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount_captured"]
        refund = {
            "id": self._id("re"),
            "object": "refund",
            "amount": amount,
            "charge": charge["id"],
            "payment_intent": charge["payment_intent"],
            "currency": charge["currency"],
            "metadata": _metadata(params),
            "reason": reason,
            "status": "succeeded",
            "created": int(time.time()),
        }
        self._refunds[refund["id"]] = refund
        return dict(refund)

    def _refund_target(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("payment_intent"):
            intent = self._intent(str(params["payment_intent"]), "payment_intent")
            return self._charges[intent["latest_charge"]]
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


def _shown(minor: int, currency: str) -> str:
    return f"{minor / 100:.2f} {currency.upper()}"


# -- serving it ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunningEmulator:
    emulator: StripeEmulator
    base_url: str


@contextmanager
def running_stripe_emulator(api_key: str = TEST_KEY) -> Iterator[RunningEmulator]:
    """The emulator served by uvicorn on a free loopback port, in a thread, while the block
    runs."""
    emulator = StripeEmulator(api_key)
    with serve_app(emulator.app(), "the Stripe emulator") as served:
        yield RunningEmulator(emulator, served.base_url)
