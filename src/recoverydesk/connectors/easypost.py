"""The EasyPost carrier connector (``kind: easypost``): the playbooks' carrier commands.

The merchant's connection (``connectors.outbound.carrier``) gives ``api_key`` (sent with HTTP
Basic auth as the user name, no password), optionally ``base_url`` (default
``https://api.easypost.com``), ``contact_email`` (named on claims) and ``timeout_seconds``.

- ``trace`` (``tracking``, ``carrier``): ``POST /v2/trackers`` with the tracking code (and
  EasyPost's name of the carrier when the desk knows it). EasyPost answers the tracker it
  already has for a code rather than make a second one, so a retry is harmless. Facts:
  ``tracker_id``, ``status``, ``status_detail``, ``est_delivery_date``, ``carrier``,
  ``public_url`` and ``last_detail`` (the newest tracking detail: message, status, time, place).
- ``claim`` (``tracking``, ``kind`` lost|damaged|stolen or ``type`` loss|damage|theft,
  ``amount``, ``description``): an insurance claim, ``POST /v2/claims``. EasyPost documents no
  idempotency key for claims, so the connector reads the claims first (``GET /v2/claims``): one
  whose description carries the desk's key, or an open one (not rejected or cancelled) of the
  same type for the same tracking code, is the answer (``already_done: true``); else the claim
  is filed with the key in its description. Facts: ``claim_id``, ``status``, ``type``,
  ``requested_amount``.

Errors: 429, 5xx, timeouts, connection errors and garbled 2xx answers raise
``OutsideUnavailable`` (retried later); 401, 403, 404, 422 and any other 4xx are a refusal with
EasyPost's own code and message. The API key is never logged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from recoverydesk.connectors.http import SharedClient
from recoverydesk.services.ports import OutsideAnswer, OutsideCommand, OutsideUnavailable

__all__ = ["DEFAULT_BASE_URL", "EasyPostCarrier", "claim_type"]

DEFAULT_BASE_URL = "https://api.easypost.com"
# The desk's delivery-exception kinds by EasyPost's claim types.
_CLAIM_TYPES = {
    "lost": "loss",
    "loss": "loss",
    "damaged": "damage",
    "damage": "damage",
    "stolen": "theft",
    "theft": "theft",
}
_CLOSED = frozenset({"rejected", "cancelled"})
# EasyPost's carrier names for the desk's (lower-case) ones; others are sent as they are.
_CARRIERS = {
    "ups": "UPS",
    "usps": "USPS",
    "fedex": "FedEx",
    "dhl": "DHLExpress",
    "dhl_express": "DHLExpress",
    "canada_post": "CanadaPost",
    "ontrac": "OnTrac",
}

_Call = Callable[[str, str, dict[str, Any] | None], httpx.Response]


class _Refused(Exception):
    def __init__(self, message: str, **facts: Any) -> None:
        super().__init__(message)
        self.message, self.facts = message, facts


def claim_type(params: Mapping[str, Any]) -> str | None:
    """EasyPost's claim type for a command's ``type`` or the case's ``kind``."""
    for name in ("type", "kind"):
        found = _CLAIM_TYPES.get(str(params.get(name) or "").lower())
        if found:
            return found
    return None


class EasyPostCarrier(SharedClient):
    """``OutsideSystems`` for EasyPost's trackers and claims; one HTTP client, shared."""

    def send(self, command: OutsideCommand) -> OutsideAnswer:
        action = _ACTIONS.get(command.action)
        if action is None:
            return OutsideAnswer(
                accepted=False,
                message=f"the easypost connector does not do {command.action!r}",
                facts={"code": "unsupported_action"},
            )
        connection = command.connection
        api_key = str(connection.get("api_key") or "")
        if not api_key:
            return OutsideAnswer(
                accepted=False,
                message="the easypost connection needs api_key",
                facts={"code": "connection_incomplete"},
            )
        base_url = str(connection.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
        timeout = _timeout(connection.get("timeout_seconds"), self._timeout)
        auth = httpx.BasicAuth(api_key, "")

        def call(method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
            return self._call(
                method,
                base_url + path,
                auth=auth,
                timeout=timeout,
                action=command.action,
                body=body,
            )

        try:
            return action(call, command)
        except _Refused as refused:
            return OutsideAnswer(accepted=False, message=refused.message, facts=refused.facts)

    def _call(
        self,
        method: str,
        url: str,
        *,
        auth: httpx.BasicAuth,
        timeout: httpx.Timeout,
        action: str,
        body: dict[str, Any] | None,
    ) -> httpx.Response:
        try:
            response = self._http().request(
                method,
                url,
                auth=auth,
                json=body,
                timeout=timeout,
                headers={"Accept": "application/json"},
            )
        except httpx.TimeoutException as error:
            raise OutsideUnavailable(
                f"EasyPost {action}: timed out ({type(error).__name__})"
            ) from None
        except httpx.HTTPError as error:
            raise OutsideUnavailable(
                f"EasyPost {action}: {type(error).__name__}: {error}"
            ) from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise OutsideUnavailable(f"EasyPost {action}: HTTP {status}: {_message(response)}")
        if 300 <= status < 400:
            raise OutsideUnavailable(f"EasyPost {action}: unexpected redirect (HTTP {status})")
        if status >= 400:
            problem = _error(response)
            raise _Refused(
                f"EasyPost refused {action}: HTTP {status}: {_message(response)}",
                http_status=status,
                code=problem.get("code"),
            )
        return response


# -- the actions ----------------------------------------------------------------------------------


def _trace(call: _Call, command: OutsideCommand) -> OutsideAnswer:
    tracking = _tracking(command)
    tracker: dict[str, Any] = {"tracking_code": tracking}
    carrier = command.params.get("carrier")
    if carrier:
        tracker["carrier"] = _CARRIERS.get(str(carrier).lower(), str(carrier))
    found = _object(call("POST", "/v2/trackers", {"tracker": tracker}), "trace")
    if not found.get("id") or not found.get("status"):
        raise OutsideUnavailable("EasyPost trace: the answer is not a Tracker")
    details = [d for d in found.get("tracking_details") or [] if isinstance(d, dict)]
    return OutsideAnswer(
        accepted=True,
        reference=str(found["id"]),
        facts={
            "tracker_id": found["id"],
            "tracking": found.get("tracking_code") or tracking,
            "status": found["status"],
            "status_detail": found.get("status_detail"),
            "est_delivery_date": found.get("est_delivery_date"),
            "carrier": found.get("carrier"),
            "public_url": found.get("public_url"),
            "last_detail": _last_detail(details),
        },
    )


def _last_detail(details: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not details:
        return None
    newest = details[-1]  # EasyPost lists a tracker's details oldest first
    place = newest.get("tracking_location")
    where = (
        ", ".join(str(place[k]) for k in ("city", "state", "country") if place.get(k))
        if isinstance(place, dict)
        else ""
    )
    return {
        "message": newest.get("message"),
        "status": newest.get("status"),
        "datetime": newest.get("datetime"),
        "location": where or None,
    }


def _claim(call: _Call, command: OutsideCommand) -> OutsideAnswer:
    tracking = _tracking(command)
    kind = claim_type(command.params)
    if kind is None:
        raise _Refused(
            f"claim: no claim type for kind {command.params.get('kind')!r} "
            "(lost, damaged or stolen; or type loss, damage or theft)",
            code="claim_type_unknown",
        )
    amount = _claim_amount(command.params.get("amount"))
    existing = _existing_claim(call, command.key, tracking, kind)
    if existing is not None:
        return _claim_answer(existing, already_done=True)
    body: dict[str, Any] = {
        "tracking_code": tracking,
        "type": kind,
        "amount": f"{amount:.2f}",
        "description": _description(command, kind),
    }
    contact = command.connection.get("contact_email")
    if contact:
        body["contact_email"] = str(contact)
    filed = _object(call("POST", "/v2/claims", body), "claim")
    return _claim_answer(filed, already_done=False)


def _existing_claim(call: _Call, key: str, tracking: str, kind: str) -> dict[str, Any] | None:
    listed = _object(call("GET", "/v2/claims?page_size=100", None), "claim")
    claims = [c for c in listed.get("claims") or [] if isinstance(c, dict)]
    for claim in claims:
        if key in str(claim.get("description") or ""):
            return claim
    for claim in claims:
        same = claim.get("tracking_code") == tracking and claim.get("type") == kind
        if same and str(claim.get("status")) not in _CLOSED:
            return claim
    return None


def _claim_answer(claim: Mapping[str, Any], *, already_done: bool) -> OutsideAnswer:
    if not claim.get("id") or not claim.get("status"):
        raise OutsideUnavailable("EasyPost claim: the answer is not a Claim")
    return OutsideAnswer(
        accepted=True,
        reference=str(claim["id"]),
        facts={
            "claim_id": claim["id"],
            "status": claim["status"],
            "type": claim.get("type"),
            "requested_amount": claim.get("requested_amount"),
            "tracking": claim.get("tracking_code"),
            "already_done": already_done,
        },
    )


def _description(command: OutsideCommand, kind: str) -> str:
    given = command.params.get("description")
    order = f"order {command.order_ref}" if command.order_ref else "the order"
    text = str(given) if given else f"Parcel {kind} for {order}, filed by the order recovery desk"
    return f"{text} [{command.key}]"


def _tracking(command: OutsideCommand) -> str:
    tracking = str(command.params.get("tracking") or "").strip()
    if not tracking:
        raise _Refused(f"{command.action}: no tracking number", code="tracking_missing")
    return tracking


def _claim_amount(raw: Any) -> Decimal:
    try:
        amount = Decimal(str(raw))
    except InvalidOperation:
        raise _Refused(f"claim: amount {raw!r} is not a number", code="amount_invalid") from None
    if not amount.is_finite() or amount <= 0:
        raise _Refused(f"claim: amount {raw!r} is not a positive amount", code="amount_invalid")
    return amount


_ACTIONS: dict[str, Callable[[_Call, OutsideCommand], OutsideAnswer]] = {
    "trace": _trace,
    "claim": _claim,
}


# -- answers --------------------------------------------------------------------------------------


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _object(response: httpx.Response, action: str) -> dict[str, Any]:
    found = _json(response)
    if not isinstance(found, dict):
        raise OutsideUnavailable(f"EasyPost {action}: the answer is not a JSON object")
    return found


def _error(response: httpx.Response) -> dict[str, Any]:
    body = _json(response)
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _message(response: httpx.Response) -> str:
    error = _error(response)
    message = str(error.get("message") or response.reason_phrase or "no message")
    fields = [
        f"{e.get('field')}: {e.get('message')}"
        for e in error.get("errors") or []
        if isinstance(e, dict) and e.get("message")
    ]
    code = f" ({error['code']})" if error.get("code") else ""
    return message + code + (f" [{'; '.join(fields)}]" if fields else "")


def _timeout(configured: object, default: float) -> httpx.Timeout:
    seconds = default
    if isinstance(configured, int | float) and not isinstance(configured, bool) and configured > 0:
        seconds = float(configured)
    return httpx.Timeout(seconds, connect=min(seconds, 5.0))
