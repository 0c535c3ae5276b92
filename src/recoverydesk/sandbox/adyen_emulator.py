"""An emulator of the parts of Adyen's Checkout API (v71) the desk's payment connector uses, over
real HTTP.

JSON bodies, ``X-API-Key`` auth with one test key and one merchant account, Adyen's error bodies
(``{"status", "errorCode", "message", "errorType"}``) and status codes (400 unreadable body, 401
bad key, 403 another merchant account, 422 a request Adyen validates away, 429, 5xx):

* ``POST /checkout/v71/payments/{paymentPspReference}/cancels``: cancels an uncaptured payment.
* ``POST .../refunds`` ``{"amount": {"value", "currency"}, "merchantAccount", "reference"}``: a
  refund of a captured payment, refused beyond the captured, unrefunded amount.
* ``POST .../amountUpdates`` ``{"amount", ...}``: a new amount for an uncaptured authorization.

Each accepted modification is answered 201 ``{"status": "received", "pspReference",
"paymentPspReference", "merchantAccount", "reference", ...}``. The real Adyen takes most
modifications this way and reports a failure later by webhook (``success: false``); the emulator
decides at once and refuses what would fail (a refund beyond the captured amount, a cancel of a
captured payment ...) with a 422 (the error codes of those refusals are the emulator's own).
It sends no webhooks.

``Idempotency-Key`` on POSTs: the same key with the same body replays the first (accepted)
answer; the same key with another body is 422 ``704``.

State is in memory, behind one lock. Tests seed it with ``create_payment``, inspect it with
``payment()`` / ``modifications()`` / ``requests`` and break it with ``fail_with`` (every request
answers that status until cleared). ``running_adyen_emulator`` serves it with uvicorn on a free
loopback port in a thread.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from recoverydesk.sandbox.serving import serve_app

TEST_KEY = "AQE_test_adyen_key_x"
TEST_MERCHANT = "AcmeECOM"

_Handler = Callable[[dict[str, Any], dict[str, Any], str], dict[str, Any]]


class AdyenProblem(Exception):
    """An error answer in Adyen's shape."""

    def __init__(self, status: int, code: str, message: str, kind: str = "validation") -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.kind = status, code, message, kind

    def body(self, psp: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": self.status,
            "errorCode": self.code,
            "message": self.message,
            "errorType": self.kind,
        }
        if psp:
            body["pspReference"] = psp
        return body


@dataclass(frozen=True, slots=True)
class _Stored:
    fingerprint: str
    body: dict[str, Any]


class AdyenEmulator:
    """The emulated merchant account: its payments, modifications, idempotency records and
    injected failures."""

    def __init__(self, api_key: str = TEST_KEY, merchant_account: str = TEST_MERCHANT) -> None:
        self.api_key, self.merchant_account = api_key, merchant_account
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._payments: dict[str, dict[str, Any]] = {}
        self._modifications: list[dict[str, Any]] = []
        self._idempotent: dict[str, _Stored] = {}
        self._failure: int | None = None
        # every request: (method, path, Idempotency-Key header or None)
        self.requests: list[tuple[str, str, str | None]] = []

    # -- for tests -----------------------------------------------------------------------------

    def create_payment(self, amount: int, currency: str = "EUR", *, capture: bool = True) -> str:
        """An authorised payment (captured in full when ``capture``); its PSP reference."""
        with self._lock:
            psp = self._psp()
            self._payments[psp] = {
                "pspReference": psp,
                "currency": currency.upper(),
                "authorised": amount,
                "captured": amount if capture else 0,
                "refunded": 0,
                "status": "captured" if capture else "authorised",
            }
            return psp

    def payment(self, psp: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._payments[psp])

    def modifications(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The accepted modifications (``kind``: cancels, refunds, amountUpdates), oldest first."""
        with self._lock:
            return [
                json.loads(json.dumps(m))
                for m in self._modifications
                if kind is None or m["kind"] == kind
            ]

    def fail_with(self, status: int | None) -> None:
        """Answer every request with this status (500, 503, 429 ...) until set back to None."""
        with self._lock:
            self._failure = status

    # -- the API ------------------------------------------------------------------------------

    def app(self) -> Starlette:
        path = "/checkout/{version}/payments/{psp}/"
        routes = [
            Route(path + "cancels", self._endpoint("cancels", self._cancel), methods=["POST"]),
            Route(path + "refunds", self._endpoint("refunds", self._refund), methods=["POST"]),
            Route(
                path + "amountUpdates",
                self._endpoint("amountUpdates", self._amount_update),
                methods=["POST"],
            ),
        ]
        return Starlette(routes=routes)

    def _endpoint(self, kind: str, handler: _Handler) -> Any:
        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            with self._lock:
                return self._serve(request, raw, kind, handler)

        return endpoint

    def _serve(self, request: Request, raw: bytes, kind: str, handler: _Handler) -> Response:
        key = request.headers.get("idempotency-key")
        self.requests.append((request.method, request.url.path, key))
        psp = self._psp()  # every answer, refusals too, has its own PSP reference
        try:
            if self._failure is not None:
                raise _failure(self._failure)
            body, payment = self._checked(request, raw)
            fingerprint = hashlib.sha256(
                json.dumps([request.url.path, body], sort_keys=True).encode()
            ).hexdigest()
            if key:
                stored = self._idempotent.get(key)
                if stored is not None:
                    if stored.fingerprint != fingerprint:
                        raise AdyenProblem(422, "704", "request already processed or in progress")
                    return JSONResponse(stored.body, 201, headers={"idempotency-key": key})
            extra = handler(payment, body, psp)
            answer = {
                "merchantAccount": body["merchantAccount"],
                "paymentPspReference": payment["pspReference"],
                "pspReference": psp,
                "status": "received",
                **({"reference": body["reference"]} if body.get("reference") else {}),
                **extra,
            }
            self._modifications.append(
                {"kind": kind, "request": body, "answer": answer, "idempotency_key": key}
            )
            if key:
                self._idempotent[key] = _Stored(fingerprint, answer)
            return JSONResponse(answer, 201, headers={"idempotency-key": key} if key else None)
        except AdyenProblem as problem:
            return JSONResponse(problem.body(psp), problem.status)

    def _checked(self, request: Request, raw: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
        """The request's body and payment, once its key, account and payment are known."""
        if request.headers.get("x-api-key") != self.api_key:
            raise AdyenProblem(401, "000", "HTTP Status Response - Unauthorized", kind="security")
        if request.path_params["version"] != "v71":
            raise AdyenProblem(404, "000", "Not found", kind="validation")
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise AdyenProblem(400, "702", "Unexpected input: the body is not JSON") from None
        if not isinstance(body, dict):
            raise AdyenProblem(400, "702", "Unexpected input: the body is not an object")
        account = body.get("merchantAccount")
        if not account:
            raise AdyenProblem(422, "901", "Invalid Merchant Account")
        if account != self.merchant_account:
            raise AdyenProblem(403, "010", "Not allowed", kind="security")
        payment = self._payments.get(str(request.path_params["psp"]))
        if payment is None:
            raise AdyenProblem(422, "167", "Original pspReference required for this operation")
        return body, payment

    def _psp(self) -> str:
        return f"EMU{int(time.time()) % 10**6:06d}{next(self._ids):07d}"

    # modifications (under the lock)

    def _cancel(self, payment: dict[str, Any], _body: dict[str, Any], _psp: str) -> dict[str, Any]:
        if payment["status"] == "captured":
            raise AdyenProblem(
                422, "emu-captured", "Payment already captured: refund it instead of cancelling"
            )
        payment["status"] = "cancelled"
        return {}

    def _refund(self, payment: dict[str, Any], body: dict[str, Any], _psp: str) -> dict[str, Any]:
        value = _amount(body, payment)
        if payment["status"] != "captured":
            raise AdyenProblem(
                422,
                "emu-not-captured",
                f"Payment is {payment['status']}: only a captured payment can be refunded",
            )
        left = payment["captured"] - payment["refunded"]
        if value > left:
            currency = payment["currency"]
            raise AdyenProblem(
                422,
                "137",
                f"Invalid amount specified: the refund ({_shown(value, currency)}) is greater "
                f"than the unrefunded captured amount ({_shown(left, currency)})",
            )
        payment["refunded"] += value
        return {"amount": dict(body["amount"])}

    def _amount_update(
        self, payment: dict[str, Any], body: dict[str, Any], _psp: str
    ) -> dict[str, Any]:
        value = _amount(body, payment)
        if payment["status"] != "authorised":
            raise AdyenProblem(
                422,
                "emu-not-authorised",
                f"Payment is {payment['status']}: only an uncaptured authorisation can be updated",
            )
        payment["authorised"] = value
        return {"amount": dict(body["amount"])}


def _amount(body: dict[str, Any], payment: dict[str, Any]) -> int:
    amount = body.get("amount")
    if not isinstance(amount, dict) or "value" not in amount or "currency" not in amount:
        raise AdyenProblem(422, "100", "Required field 'amount' is not provided.")
    value = amount["value"]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise AdyenProblem(422, "137", "Invalid amount specified")
    if str(amount["currency"]).upper() != payment["currency"]:
        raise AdyenProblem(
            422,
            "137",
            f"Invalid amount specified: the payment is in {payment['currency']}, "
            f"the request in {amount['currency']}",
        )
    return value


def _failure(status: int) -> AdyenProblem:
    if status == 429:
        return AdyenProblem(429, "429", "Too many requests (emulated)", kind="validation")
    return AdyenProblem(status, "000", "An unknown error occurred (emulated)", kind="internal")


def _shown(minor: int, currency: str) -> str:
    return f"{minor / 100:.2f} {currency}"


# -- serving it ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunningAdyenEmulator:
    emulator: AdyenEmulator
    base_url: str


@contextmanager
def running_adyen_emulator(
    api_key: str = TEST_KEY, merchant_account: str = TEST_MERCHANT
) -> Iterator[RunningAdyenEmulator]:
    """The emulator served by uvicorn on a free loopback port, in a thread, while the block
    runs."""
    emulator = AdyenEmulator(api_key, merchant_account)
    with serve_app(emulator.app(), "the Adyen emulator") as served:
        yield RunningAdyenEmulator(emulator, served.base_url)
