"""The payments connector for Adyen (``connectors.outbound.payments.kind: adyen``), on Adyen's
Checkout API (v71) over HTTP.

The merchant's connection gives ``base_url`` (``https://checkout-test.adyen.com`` for test, the
live ``https://<prefix>-checkout-live.adyenpayments.com/checkout`` for live), ``api_key`` (sent
as ``X-API-Key``), ``merchant_account`` and optionally ``timeout_seconds``. The payment is named by
its PSP reference (``order_ids.adyen_psp_reference``, as the Adyen webhooks give it).

Commands (system ``payments``):

* ``void``: ``POST /checkout/v71/payments/{psp}/cancels``.
* ``refund`` (``amount`` in major units, ``currency``): ``POST .../payments/{psp}/refunds`` with
  ``amount`` in minor units, ``merchantAccount`` and ``reference`` = the desk's key (also
  sent as ``Idempotency-Key``), so Adyen's REFUND webhook names the desk's intent in its
  ``merchantReference``.
* ``reduce_authorization`` (``amount`` to release, ``currency``, and ``authorized``, the amount
  authorised now): ``POST /checkout/v71/payments/{psp}/amountUpdates`` with the new, lower amount
  (``authorized - amount``). Adyen cannot say what is authorised (it has no payment lookup), so
  without ``authorized`` the command is refused; releasing everything is refused (that is a void).
* ``refund_lookup``: refused: Adyen has no refund search; a refund is confirmed by the REFUND
  webhook whose ``merchantReference`` is the desk's key.

Adyen answers a modification with 201 ``{"status": "received", "pspReference"}`` (the answer's
reference is the modification's PSP reference) and confirms it later by webhook.

Errors: 429, 5xx, timeouts, connection errors and garbled 2xx answers raise
``OutsideUnavailable`` (retried later); 401, 403, 422 and any other 4xx are a refusal with Adyen's
``message`` and ``errorCode``. The API key is never logged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

import httpx

from recoverydesk.connectors.http import SharedClient
from recoverydesk.connectors.normalize._common import minor_units
from recoverydesk.services.ports import OutsideAnswer, OutsideCommand, OutsideUnavailable

__all__ = ["API_VERSION", "AdyenPayments"]

API_VERSION = "v71"
PSP_ID = "adyen_psp_reference"


class _Refused(Exception):
    """A command the connector refuses before (or instead of) calling Adyen."""

    def __init__(self, message: str, **facts: Any) -> None:
        super().__init__(message)
        self.message, self.facts = message, facts


def _exponent(currency: str) -> int:
    return -Decimal(minor_units(1, currency, "unit")).as_tuple().exponent  # type: ignore[operator]


def to_minor(amount: object, currency: str) -> int:
    """A major-unit decimal string to Adyen's minor units (10.99 EUR -> 1099, 500 JPY -> 500)."""
    code = currency.upper()
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise _Refused(f"amount {amount!r} is not a number") from None
    minor = value.scaleb(_exponent(code))
    if not value.is_finite() or minor != minor.to_integral_value() or minor <= 0:
        raise _Refused(f"amount {amount} {code} is not a positive amount in {code}'s units")
    return int(minor)


def _major(minor: int, currency: str) -> str:
    return minor_units(minor, currency.upper(), "amount")


def _currency(command: OutsideCommand) -> str:
    currency = str(command.params.get("currency") or "").upper()
    if len(currency) != 3 or not currency.isalpha():
        raise _Refused(f"{command.action} without a currency (params: {sorted(command.params)})")
    return currency


class AdyenPayments(SharedClient):
    """``OutsideSystems`` for Adyen's Checkout API; one HTTP client, shared by threads."""

    default_timeout = 20.0

    def send(self, command: OutsideCommand) -> OutsideAnswer:
        action = _ACTIONS.get(command.action)
        if command.system != "payments" or action is None:
            return OutsideAnswer(
                accepted=False,
                message=f"the Adyen connector does not do {command.system}.{command.action}",
            )
        try:
            return action(self, command)
        except _Refused as refused:
            return OutsideAnswer(accepted=False, message=refused.message, facts=refused.facts)

    # -- HTTP ---------------------------------------------------------------------------------

    def modify(
        self, command: OutsideCommand, what: str, body: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """POST one modification of the command's payment; Adyen's accepted answer, or a
        ``_Refused`` / ``OutsideUnavailable`` raised."""
        connection = command.connection
        base_url = str(connection.get("base_url") or "").rstrip("/")
        api_key = str(connection.get("api_key") or "")
        merchant_account = str(connection.get("merchant_account") or "")
        if not base_url or not api_key or not merchant_account:
            missing = [
                name
                for name, value in (
                    ("base_url", base_url),
                    ("api_key", api_key),
                    ("merchant_account", merchant_account),
                )
                if not value
            ]
            raise _Refused(
                "the Adyen connection needs " + ", ".join(missing) + " (connectors.outbound."
                "payments)",
                code="connection_incomplete",
            )
        psp = command.order_ids.get(PSP_ID)
        if not psp:
            raise _Refused(
                f"order {command.order_ref} has no Adyen PSP reference (order ids: {PSP_ID})"
            )
        url = f"{base_url}/checkout/{API_VERSION}/payments/{quote(psp, safe='')}/{what}"
        headers = {
            "X-API-Key": api_key,
            "Idempotency-Key": command.key,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        payload = {"merchantAccount": merchant_account, "reference": command.key, **body}
        action = command.action
        try:
            response = self._http().post(
                url,
                headers=headers,
                content=json.dumps(payload),
                timeout=_timeout(connection, self._timeout),
            )
        except httpx.TimeoutException as error:
            raise OutsideUnavailable(
                f"Adyen is unavailable for {action}: timed out ({type(error).__name__})"
            ) from None
        except httpx.HTTPError as error:
            raise OutsideUnavailable(
                f"Adyen is unavailable for {action} ({type(error).__name__}): {error}"
            ) from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise OutsideUnavailable(
                f"Adyen is unavailable for {action} (HTTP {status}): {_message(response)}"
            )
        if 300 <= status < 400:
            raise OutsideUnavailable(f"Adyen {action}: unexpected redirect (HTTP {status})")
        if status >= 400:
            raise _refusal(response, action)
        found = _object(response)
        reference = found.get("pspReference") if found is not None else None
        if found is None or not isinstance(reference, str) or not reference:
            raise OutsideUnavailable(f"Adyen {action}: the answer has no pspReference")
        return reference, found


def _timeout(connection: Mapping[str, Any], default: float = 20.0) -> httpx.Timeout:
    configured = connection.get("timeout_seconds")
    seconds = default
    if isinstance(configured, int | float) and not isinstance(configured, bool) and configured > 0:
        seconds = float(configured)
    return httpx.Timeout(seconds, connect=min(seconds, 5.0))


def _object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        value = response.json()
    except (ValueError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _message(response: httpx.Response) -> str:
    found = _object(response) or {}
    message = found.get("message")
    if isinstance(message, str) and message.strip():
        return message.strip()[:500]
    text = response.text.strip()
    return text[:500] if text else f"HTTP {response.status_code} {response.reason_phrase}"


def _refusal(response: httpx.Response, action: str) -> _Refused:
    """A 4xx: Adyen's ``{"status", "errorCode", "message", "errorType"}`` as a refusal."""
    found = _object(response) or {}
    code = found.get("errorCode")
    facts: dict[str, Any] = {"http_status": response.status_code}
    if code is not None:
        facts["adyen_code"] = str(code)
    if found.get("errorType"):
        facts["adyen_type"] = str(found["errorType"])
    if found.get("pspReference"):
        facts["adyen_psp_reference"] = str(found["pspReference"])
    message = _message(response)
    if response.status_code == 401:
        message = (
            f"the API key was rejected (check connectors.outbound.payments.api_key): {message}"
        )
    elif response.status_code == 403:
        message = f"the API key may not do this (its roles, or the merchant account?): {message}"
    detail = f" [{code}]" if code is not None else ""
    return _Refused(f"Adyen refused {action}{detail}: {message}", **facts)


def _received(reference: str, found: dict[str, Any], psp: str, **facts: Any) -> OutsideAnswer:
    return OutsideAnswer(
        accepted=True,
        reference=reference,
        facts={"status": str(found.get("status") or "received"), "payment": psp, **facts},
    )


def _void(adyen: AdyenPayments, command: OutsideCommand) -> OutsideAnswer:
    reference, found = adyen.modify(command, "cancels", {})
    return _received(reference, found, command.order_ids[PSP_ID])


def _refund(adyen: AdyenPayments, command: OutsideCommand) -> OutsideAnswer:
    currency = _currency(command)
    amount = to_minor(command.params.get("amount"), currency)
    reference, found = adyen.modify(
        command, "refunds", {"amount": {"value": amount, "currency": currency}}
    )
    return _received(reference, found, command.order_ids[PSP_ID], amount=_major(amount, currency))


def _reduce_authorization(adyen: AdyenPayments, command: OutsideCommand) -> OutsideAnswer:
    currency = _currency(command)
    release = to_minor(command.params.get("amount"), currency)
    if command.params.get("authorized") in (None, ""):
        raise _Refused(
            "Adyen cannot say how much is authorised (it has no payment lookup), so the new "
            "amount of the authorization is unknown: give params.authorized, or void the payment"
        )
    authorized = to_minor(command.params.get("authorized"), currency)
    keep = authorized - release
    if keep <= 0:
        raise _Refused(
            f"releasing {_major(release, currency)} of an authorization of "
            f"{_major(authorized, currency)} leaves nothing to capture: void the payment instead"
        )
    reference, found = adyen.modify(
        command,
        "amountUpdates",
        {"amount": {"value": keep, "currency": currency}, "industryUsage": "delayedCharge"},
    )
    return _received(
        reference,
        found,
        command.order_ids[PSP_ID],
        authorized=_major(keep, currency),
        released=_major(release, currency),
    )


def _refund_lookup(_adyen: AdyenPayments, command: OutsideCommand) -> OutsideAnswer:
    intent = str(command.params.get("intent") or "")
    return OutsideAnswer(
        accepted=False,
        message=(
            "Adyen has no refund search API: a refund"
            + (f" made under intent {intent}" if intent else "")
            + " is confirmed by Adyen's REFUND webhook, whose merchantReference is the desk's key"
        ),
        facts={"lookup_supported": False},
    )


_ACTIONS: dict[str, Callable[[AdyenPayments, OutsideCommand], OutsideAnswer]] = {
    "void": _void,
    "refund": _refund,
    "reduce_authorization": _reduce_authorization,
    "refund_lookup": _refund_lookup,
}
